# The plain-R side of bench/inference.py: the same steps with lme4, lmerTest, emmeans and
# pbkrtest, timed inside R (elapsed seconds per step), printed as one JSON line.
#
#   Rscript bench/inference_native.R <n_kr_rows>

suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
  library(emmeans)
  library(pbkrtest)
  library(jsonlite)
})
args <- commandArgs(trailingOnly = TRUE)
n_kr <- if (length(args)) as.integer(args[[1L]]) else 5000L
times <- list()
cpu <- list()
values <- list()
cpu_now <- function() {
  p <- proc.time()
  p[["user.self"]] + p[["sys.self"]]
}
step <- function(name, expr) {
  start <- proc.time()[["elapsed"]]
  start_cpu <- cpu_now()
  value <- expr
  times[[name]] <<- proc.time()[["elapsed"]] - start
  cpu[[name]] <<- cpu_now() - start_cpu
  value
}
f <- y ~ service * studage + (1 | s) + (1 | d) + (1 | dept)
d <- InstEval
m <- step("fit", lme4::lmer(f, d))
# lmerTest's conversion (its Hessian of the deviance) is part of the first test, as in
# pylmer (which caches it for the later steps)
a3 <- step("anova3_satterthwaite", {
  mt <- as_lmerModLmerTest(m)
  anova(mt, type = 3)
})
values$anova3_F <- unname(a3[["F value"]])
values$anova3_DenDF <- unname(a3[["DenDF"]])
pairs_tab <- step("emmeans_pairwise_satterthwaite", {
  e <- emmeans(mt, "studage", by = "service", lmer.df = "satterthwaite",
               lmerTest.limit = Inf)
  means_tab <- summary(e)  # pylmer returns the means with the contrasts
  summary(pairs(e), infer = c(TRUE, TRUE))
})
# the same call again, five times (median): the first call of a session also pays a
# full garbage collection of R's heap (about 0.2 s here) that either side meets somewhere
again <- vapply(1:5, function(i) {
  start <- proc.time()[["elapsed"]]
  start_cpu <- cpu_now()
  e <- emmeans(mt, "studage", by = "service", lmer.df = "satterthwaite",
               lmerTest.limit = Inf)
  summary(e)
  summary(pairs(e), infer = c(TRUE, TRUE))
  c(proc.time()[["elapsed"]] - start, cpu_now() - start_cpu)
}, numeric(2))
times$emmeans_again_median_of_5 <- stats::median(again[1, ])
cpu$emmeans_again_median_of_5 <- stats::median(again[2, ])
values$means_df <- means_tab$df
values$pairs_estimate <- pairs_tab$estimate
values$pairs_df <- pairs_tab$df
small <- d[seq_len(n_kr), ]
m2 <- step("fit_subset", lme4::lmer(f, small))
kr <- step("kenward_roger_table", {
  mt2 <- as_lmerModLmerTest(m2)
  coef(summary(mt2, ddf = "Kenward-Roger"))
})
values$kr_df <- unname(kr[, "df"])
kra <- step("anova3_kenward_roger", anova(mt2, type = 3, ddf = "Kenward-Roger"))
values$kr_anova_DenDF <- unname(kra[["DenDF"]])
cat(toJSON(list(times = times, cpu = cpu, values = values, n_kr = n_kr), digits = NA,
           auto_unbox = TRUE), "\n")
