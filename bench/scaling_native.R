# Plain-R side of bench/scaling.py: read the simulated data (raw binary files written by
# the Python side), then time lme4's fit (calc.derivs = FALSE, as pylmer fits data of
# this size) and the whole job with lmerTest (summary with Satterthwaite df, ranef with
# conditional variances, coef, VarCorr, logLik, fitted, residuals).
#
#   Rscript bench/scaling_native.R DIR
#
# Prints one JSON line: fit_wall, fit_cpu, job_wall, job_cpu (seconds).

suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
})

dir <- commandArgs(trailingOnly = TRUE)[1L]
read <- function(name, what) {
  path <- file.path(dir, paste0(name, ".bin"))
  size <- if (what == "double") 8L else 4L
  readBin(path, what, n = file.size(path) / size, size = size)
}
data <- data.frame(y = read("y", "double"), x = read("x", "double"),
                   g1 = factor(read("g1", "integer")), g2 = factor(read("g2", "integer")))
cpu <- function() {
  p <- proc.time()
  p[["user.self"]] + p[["sys.self"]]
}
t0 <- proc.time()[["elapsed"]]
c0 <- cpu()
m <- lmerTest::lmer(y ~ x + (1 | g1) + (1 | g2), data = data,
                    control = lmerControl(calc.derivs = FALSE))
t1 <- proc.time()[["elapsed"]]
c1 <- cpu()
s <- summary(m)
re <- ranef(m, condVar = TRUE)
out <- list(coef(s), re, coef(m), as.data.frame(VarCorr(m)), logLik(m), fitted(m),
            residuals(m))
t2 <- proc.time()[["elapsed"]]
c2 <- cpu()
cat(sprintf('{"fit_wall": %.4f, "fit_cpu": %.4f, "job_wall": %.4f, "job_cpu": %.4f}\n',
            t1 - t0, c1 - c0, t2 - t0, c2 - c0))
