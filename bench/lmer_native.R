# Plain-R side of bench/lmer.py, on InstEval y ~ service + (1|s) + (1|d) + (1|dept) (REML).
#
#   Rscript bench/lmer_native.R job          the whole job a user runs with lme4 + lmerTest:
#                                            fit (lmerTest's lmer, lme4's defaults), summary()
#                                            with Satterthwaite df and p, the coefficient
#                                            table, ranef with conditional SDs, coef,
#                                            VarCorr, fitted, residuals
#   Rscript bench/lmer_native.R job-noderivs the same with lmerControl(calc.derivs = FALSE)
#                                            (lme4 >= 1.1-38's default on data this size)
#   Rscript bench/lmer_native.R bare         lme4's lmer() alone, calc.derivs = FALSE (the control
#                                            pylmer fits InstEval with), from data() on
#   Rscript bench/lmer_native.R steps        pylmer's R code in plain R: the fit as pylmer
#                                            runs it (calc.derivs = FALSE), then
#                                            r_scripts/satterthwaite.R's df, timed apart
#
# Prints "key=seconds" lines (wall-clock; cpu = user + system of this process), from
# data() to the last result; R's start-up and library() are not timed.

suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
})

mode <- commandArgs(trailingOnly = TRUE)[1L]
if (is.na(mode)) mode <- "job"
cpu <- function(t) t[["user.self"]] + t[["sys.self"]]
report <- function(key, t0, t1) {
  cat(sprintf("%s_wall=%.4f\n%s_cpu=%.4f\n", key, t1[["elapsed"]] - t0[["elapsed"]], key,
              cpu(t1) - cpu(t0)))
}
f <- y ~ service + (1 | s) + (1 | d) + (1 | dept)

condsd <- function(r) {
  pv <- attr(r, "postVar")
  out <- as.data.frame(lapply(seq_len(ncol(r)), function(k) sqrt(pv[k, k, ])))
  names(out) <- names(r)
  out
}

if (mode %in% c("job", "job-noderivs")) {
  t0 <- proc.time()
  env <- new.env()
  utils::data("InstEval", package = "lme4", envir = env)
  data <- env$InstEval
  ctrl <- if (mode == "job") lmerControl() else lmerControl(calc.derivs = FALSE)
  m <- lmerTest::lmer(f, data = data, control = ctrl)
  s <- summary(m)  # Satterthwaite df and p values
  table <- coef(s)
  re <- ranef(m, condVar = TRUE)
  results <- list(table = table, ranef = re, ranef_sd = lapply(re, condsd), coef = coef(m),
                  varcorr = as.data.frame(VarCorr(m)), fitted = fitted(m),
                  residuals = residuals(m))
  t1 <- proc.time()
  report("job", t0, t1)
  cat(sprintf("df_intercept=%.10f\n", table["(Intercept)", "df"]))
  cat("blas=", utils::sessionInfo()$BLAS, "\n", sep = "")
} else if (mode == "bare") {
  env <- new.env()
  utils::data("InstEval", package = "lme4", envir = env)
  data <- env$InstEval
  t0 <- proc.time()
  m <- lme4::lmer(f, data = data, control = lmerControl(calc.derivs = FALSE))
  t1 <- proc.time()
  report("job", t0, t1)
} else if (mode == "steps") {
  sat <- file.path(dirname(sub("--file=", "", grep("--file=", commandArgs(), value = TRUE))),
                   "..", "r_scripts", "satterthwaite.R")
  source(sat)
  env <- new.env()
  utils::data("InstEval", package = "lme4", envir = env)
  data <- env$InstEval
  t0 <- proc.time()
  m <- lme4::lmer(f, data = data, control = lmerControl(calc.derivs = FALSE))
  t1 <- proc.time()
  tab <- .pylmer_lmer_satterthwaite_table(m)$table
  t2 <- proc.time()
  report("fit", t0, t1)
  report("satterthwaite", t1, t2)
  t3 <- proc.time()
  mt <- lmerTest::as_lmerModLmerTest(m)
  lt <- summary(mt)$coefficients
  t4 <- proc.time()
  report("lmertest", t3, t4)
  cat(sprintf("df_intercept=%.10f\nlmertest_df_intercept=%.10f\n", tab$df[1], lt[1, "df"]))
} else {
  stop("unknown mode: ", mode)
}
