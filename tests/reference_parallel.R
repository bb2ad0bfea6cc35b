# Reference values for tests/test_parallel.py from plain R (lme4, lmerTest, pbkrtest):
# bootMer draws and confint(method = "boot"), PBmodcomp, and a plain-R loop of refit()
# over many responses.  Usage: Rscript tests/reference_parallel.R <output dir>
# (standalone: does nothing when sourced).

.ref_parallel_main <- function(out) {
  suppressMessages({
    library(lme4)
    library(lmerTest)
    library(pbkrtest)
    library(jsonlite)
  })
  dir.create(out, showWarnings = FALSE, recursive = TRUE)
  put <- function(x, name) {
    writeLines(toJSON(x, digits = NA, auto_unbox = TRUE, na = "null"),
               file.path(out, paste0(name, ".json")))
  }
  data("sleepstudy", package = "lme4")
  m <- lme4::lmer(Reaction ~ Days + (Days | Subject), sleepstudy)

  # bootMer with the statistic of confint(method = "boot") (old names)
  fun <- function(x) {
    ss <- Cv_to_Sv(x@theta, n = lengths(x@cnms), s = sigma(x))
    c(setNames(ss, c(sprintf(".sig%02d", seq_along(x@theta)), ".sigma")), fixef(x))
  }
  bb <- suppressMessages(bootMer(m, fun, nsim = 30, seed = 42))
  ci <- suppressMessages(confint(m, method = "boot", nsim = 30, seed = 42))
  put(list(names = names(bb$t0), t0 = unname(bb$t0), t = unname(bb$t),
           ci_names = rownames(ci), lower = unname(ci[, 1]), upper = unname(ci[, 2]),
           ci_cols = colnames(ci)), "boot_sleepstudy")

  # rows with a missing response: lme4 drops them, bootMer simulates the rows it used
  dn <- sleepstudy
  dn$Reaction[c(4L, 51L)] <- NA
  mn <- lme4::lmer(Reaction ~ Days + (Days | Subject), dn)
  bn <- suppressMessages(bootMer(mn, fun, nsim = 5, seed = 3))
  put(list(t = unname(bn$t)), "boot_missing")

  # parametric-bootstrap LRT (PBmodcomp ignores its seed argument: seed R's generator)
  m0 <- lme4::lmer(Reaction ~ 1 + (Days | Subject), sleepstudy)
  set.seed(7)
  ref <- suppressMessages(PBrefdist(m, m0, nsim = 20))
  set.seed(7)
  pb <- suppressMessages(PBmodcomp(m, m0, nsim = 20))
  put(list(ref = as.numeric(ref), stat = pb$test["LRT", "stat"], df = pb$test["LRT", "df"],
           p_lrt = pb$test["LRT", "p.value"], p_pb = pb$test["PBtest", "p.value"]),
      "pb_sleepstudy")

  # many responses: template fitted to the first, refit() (warm start) for every one,
  # lmerTest's Satterthwaite tests re-evaluating the call where `d` holds that response
  Y <- as.matrix(simulate(m, nsim = 6, seed = 3))
  d <- sleepstudy
  d$y <- Y[, 1]
  tmpl <- lme4::lmer(y ~ Days + (Days | Subject), data = d)
  rows <- list()
  for (j in seq_len(ncol(Y))) {
    d$y <- Y[, j]
    f <- suppressMessages(lme4::refit(tmpl, Y[, j]))
    tab <- summary(lmerTest::as_lmerModLmerTest(f))$coefficients
    vc <- as.data.frame(VarCorr(f))
    rows[[j]] <- list(estimate = unname(tab[, "Estimate"]),
                      std_error = unname(tab[, "Std. Error"]), df = unname(tab[, "df"]),
                      p_value = unname(tab[, "Pr(>|t|)"]), terms = rownames(tab),
                      sigma = sigma(f), loglik = as.numeric(logLik(f)),
                      sdcor = vc$sdcor, singular = isSingular(f))
  }
  # a response with missing values: a fresh lmer() on its complete rows
  y_na <- Y[, 2]
  y_na[c(3, 50, 51)] <- NA
  d$y <- y_na
  fna <- lme4::lmer(y ~ Days + (Days | Subject), data = d)
  put(list(Y = unname(Y), fits = rows, y_na = y_na,
           na_estimate = unname(fixef(fna)), na_sigma = sigma(fna)),
      "many_sleepstudy")
}

if (sys.nframe() == 0L) .ref_parallel_main(commandArgs(trailingOnly = TRUE)[1L])
