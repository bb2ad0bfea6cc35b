# Reference values for the GLMM cases of tests/test_parallel.py, from plain R (lme4's
# confint(method = "boot") and pbkrtest's PBmodcomp on cbpp's cbind() binomial GLMM).
#
#   Rscript tests/reference_parallel_glmm.R OUTDIR

suppressPackageStartupMessages({
  library(lme4)
  library(pbkrtest)
  library(jsonlite)
})
args <- commandArgs(trailingOnly = TRUE)
outdir <- if (length(args)) args[[1L]] else "reference_parallel_glmm"
dir.create(outdir, showWarnings = FALSE, recursive = TRUE)
m <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), data = cbpp,
           family = binomial)
m0 <- glmer(cbind(incidence, size - incidence) ~ 1 + (1 | herd), data = cbpp,
            family = binomial)
ci <- suppressWarnings(confint(m, method = "boot", nsim = 8L, seed = 1L))
set.seed(3)
pb <- suppressWarnings(PBmodcomp(m, m0, nsim = 8L))
out <- list(
  ci_names = rownames(ci), lower = unname(ci[, 1L]), upper = unname(ci[, 2L]),
  ref = unname(as.numeric(pb$ref)), stat = pb$test["LRT", "stat"],
  p_pb = pb$test["PBtest", "p.value"]
)
write_json(out, file.path(outdir, "cbpp.json"), digits = NA, auto_unbox = TRUE)

# lmer_many(family = "poisson"): a template glmer fitted to the first response, refit()
# to each (glmerControl() as pylmer's call holds it); a response with a missing value
# gets a fresh glmer fit on its complete rows.
set.seed(11)
u <- rnorm(nlevels(cbpp$herd), sd = 0.5)[as.integer(cbpp$herd)]
Y <- sapply(1:3, function(j) rpois(nrow(cbpp), exp(1 + 0.3 * (cbpp$period == "2") + u)))
Y <- cbind(Y, Y[, 1L])
Y[5L, 4L] <- NA
d <- cbpp
d$.pylmer_y <- Y[, 1L]
template <- glmer(.pylmer_y ~ period + (1 | herd), data = d, family = poisson)
fits <- lapply(seq_len(ncol(Y)), function(j) {
  if (anyNA(Y[, j])) {
    d$.pylmer_y <- Y[, j]
    glmer(.pylmer_y ~ period + (1 | herd), data = d, family = poisson, na.action = na.omit)
  } else {
    refit(template, Y[, j], control = glmerControl())
  }
})
out <- list(
  Y = unname(lapply(seq_len(ncol(Y)), function(j) Y[, j])),
  estimate = unname(lapply(fits, function(m) unname(fixef(m)))),
  std_error = unname(lapply(fits, function(m) unname(sqrt(diag(as.matrix(vcov(m))))))),
  sd = unname(lapply(fits, function(m) as.data.frame(VarCorr(m))$sdcor)),
  loglik = unname(vapply(fits, function(m) as.numeric(logLik(m)), 0))
)
write_json(out, file.path(outdir, "many_poisson.json"), digits = NA, auto_unbox = TRUE,
           na = "null")

# bootstrap of a glmmTMB fit: simulate() after set.seed(seed), glmmTMB's refit() to each
# draw; statistic: conditional and zero-inflation fixed effects, random-effect sd.
suppressPackageStartupMessages(library(glmmTMB))
data(Salamanders, package = "glmmTMB")
zm <- glmmTMB(count ~ mined + (1 | site), ziformula = ~mined, family = poisson,
              data = Salamanders)
set.seed(1)
zs <- simulate(zm, nsim = 4L)
zt <- t(sapply(zs, function(y) {
  f <- refit(zm, y)
  c(fixef(f)$cond, fixef(f)$zi, attr(VarCorr(f)$cond$site, "stddev"))
}))
write_json(list(t = unname(lapply(seq_len(nrow(zt)), function(i) unname(zt[i, ])))),
           file.path(outdir, "tmb_boot.json"), digits = NA, auto_unbox = TRUE)
