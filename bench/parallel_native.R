# Plain-R baselines of bench/parallel.py (lme4 only, no pylmer code).
# Usage: Rscript bench/parallel_native.R <task> <n>
#   boot_serial  n   bootMer(m, <confint's statistic>, nsim = n, seed = 1)
#   boot_mc      n   the same with parallel = "multicore", ncpus = 2
#   many_lmer    n   a loop of lmer() over n responses simulated from sleepstudy's fit
#   many_refit   n   a loop of refit() from the first response's fit
#   many_lmertest n  the refit loop plus lmerTest's Satterthwaite tests
# Each loop keeps what lmer_many returns (coefficient table, VarCorr, logLik, sigma,
# singularity).  Prints "<wall seconds> <cpu seconds> <checksum>" of the timed part
# (R's start-up, library() and the template fit are not timed).
suppressMessages({
  library(lme4)
  library(lmerTest)
})
args <- commandArgs(trailingOnly = TRUE)
task <- args[1L]
n <- as.integer(args[2L])
data("sleepstudy", package = "lme4")
m <- lme4::lmer(Reaction ~ Days + (Days | Subject), sleepstudy)

stat <- function(x) {
  ss <- Cv_to_Sv(x@theta, n = lengths(x@cnms), s = sigma(x))
  c(ss, fixef(x))
}

keep <- function(f) {
  list(coef = stats::coef(summary(f)), vc = as.data.frame(VarCorr(f)),
       loglik = as.numeric(logLik(f)), sigma = sigma(f), singular = isSingular(f))
}

timed <- function(expr) {
  t <- system.time(value <- expr)
  list(wall = t[["elapsed"]], cpu = t[["user.self"]] + t[["sys.self"]] +
         sum(t[["user.child"]], t[["sys.child"]], na.rm = TRUE), value = value)
}

if (task %in% c("boot_serial", "boot_mc")) {
  par <- if (task == "boot_mc") "multicore" else "no"
  r <- timed(suppressMessages(suppressWarnings(
    bootMer(m, stat, nsim = n, seed = 1, parallel = par, ncpus = 2L)
  )))
  check <- sum(r$value$t, na.rm = TRUE)
} else {
  Y <- as.matrix(simulate(m, nsim = n, seed = 1))
  d <- sleepstudy
  d$y <- Y[, 1L]
  tmpl <- lme4::lmer(y ~ Days + (Days | Subject), data = d)
  r <- timed(suppressMessages(suppressWarnings(lapply(seq_len(n), function(j) {
    if (task == "many_lmer") {
      d$y <- Y[, j]
      keep(lme4::lmer(y ~ Days + (Days | Subject), data = d))
    } else if (task == "many_refit") {
      keep(lme4::refit(tmpl, Y[, j]))
    } else {
      d$y <- Y[, j]
      f <- lme4::refit(tmpl, Y[, j])
      c(keep(f), list(tab = summary(lmerTest::as_lmerModLmerTest(f))$coefficients))
    }
  }))))
  check <- sum(vapply(r$value, function(x) x$coef[2L, 1L], 0))
}
cat(sprintf("%.4f %.4f %.10g\n", r$wall, r$cpu, check))
