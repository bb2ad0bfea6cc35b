# Reference values for tests/test_diagnostics.py and tests/test_compare.py from plain R
# (lme4; no pylmer code): influence.merMod by subject and by observation, dfbetas,
# cooks.distance, hatvalues for lmer and glmer; AIC, BIC, logLik, AICc and anova() of
# nested models.  Usage: Rscript tests/reference_diagnostics.R <output dir> (standalone:
# does nothing when sourced).

.ref_diag_main <- function(out) {
  suppressMessages({
    library(lme4)
    library(jsonlite)
  })
  dir.create(out, showWarnings = FALSE, recursive = TRUE)
  put <- function(x, name) {
    writeLines(toJSON(x, digits = NA, auto_unbox = TRUE, na = "null"),
               file.path(out, paste0(name, ".json")))
  }
  tab <- function(x) list(rows = rownames(x), cols = colnames(x), values = unname(as.matrix(x)))
  data("sleepstudy", package = "lme4")
  m <- lmer(Reaction ~ Days + (Days | Subject), data = sleepstudy)
  inf <- influence(m, groups = "Subject")
  put(list(fixed = tab(inf[["fixed.effects[-Subject]"]]), dfbetas = tab(dfbetas(inf)),
           dfbeta = tab(dfbeta(inf)), cooks = unname(cooks.distance(inf)),
           vc = tab(inf[["var.cov.comps[-Subject]"]]), converged = unname(inf$converged),
           hat = unname(hatvalues(m)), cooks_model = unname(cooks.distance(m))),
      "lmer_subject")

  # leave-one-observation-out on six subjects (60 rows)
  small <- sleepstudy[sleepstudy$Subject %in% levels(sleepstudy$Subject)[1:6], ]
  small$Subject <- droplevels(small$Subject)
  rownames(small) <- NULL
  ms <- lmer(Reaction ~ Days + (1 | Subject), data = small)
  infs <- influence(ms)
  put(list(fixed = tab(infs[["fixed.effects[-case]"]]), dfbetas = tab(dfbetas(infs)),
           cooks = unname(cooks.distance(infs)), hat = unname(hatvalues(ms))), "lmer_case")

  # glmer: cbpp by herd
  g <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), data = cbpp,
             family = binomial)
  infg <- influence(g, groups = "herd")
  put(list(fixed = tab(infg[["fixed.effects[-herd]"]]), dfbetas = tab(dfbetas(infg)),
           cooks = unname(cooks.distance(infg)),
           hat = unname(suppressWarnings(hatvalues(g))),
           cooks_model = unname(suppressWarnings(cooks.distance(g)))), "glmer_herd")

  # model comparison: REML fits compared by anova() (refitted by ML), AIC/BIC/logLik
  m0 <- lmer(Reaction ~ 1 + (Days | Subject), data = sleepstudy)
  m2 <- lmer(Reaction ~ Days + (1 | Subject), data = sleepstudy)
  a <- suppressMessages(anova(m0, m2, m))
  ml <- lapply(list(m0 = m0, m2 = m2, m = m), refitML)
  ic <- function(x) {
    ll <- logLik(x)
    k <- attr(ll, "df")
    n <- nobs(x)
    c(logLik = as.numeric(ll), df = k, AIC = AIC(x), BIC = BIC(x),
      AICc = AIC(x) + 2 * k * (k + 1) / (n - k - 1))
  }
  put(list(anova = tab(as.data.frame(a)), ml = lapply(ml, ic),
           reml = lapply(list(m0 = m0, m2 = m2, m = m), ic)), "compare_sleepstudy")
  g0 <- update(g, . ~ . - period)
  ag <- anova(g0, g)
  put(list(anova = tab(as.data.frame(ag)), g = ic(g), g0 = ic(g0)), "compare_cbpp")
}

if (sys.nframe() == 0L) .ref_diag_main(commandArgs(trailingOnly = TRUE)[1L])
