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
