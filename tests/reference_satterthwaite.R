# Reference values for tests/test_satterthwaite.py: lmerTest's Satterthwaite df and p
# values in plain R (lme4 + lmerTest, no pylmer code) for models beyond reference.R's:
# singular fits, prior weights, uncorrelated terms, several fixed effects.
#
#   Rscript tests/reference_satterthwaite.R <outdir>
#
# Writes <outdir>/<case>_<reml|ml>.json (tests/_refcache.py runs it once per machine).

suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = TRUE)
outdir <- if (length(args)) args[[1L]] else "satterthwaite-reference"
dir.create(outdir, showWarnings = FALSE, recursive = TRUE)

cases <- list(
  # a variance at zero (scalar random effect)
  Dyestuff2 = list(data = "Dyestuff2", formula = Yield ~ 1 + (1 | Batch)),
  # a correlated term on the boundary (theta = 0.28, -0.001, 0)
  cake_slope = list(data = "cake", formula = angle ~ temp + (temp | recipe)),
  # several fixed effects, a random intercept of an interaction of factors
  cake_recipe = list(data = "cake", formula = angle ~ recipe + temp + (1 | recipe:replicate)),
  # uncorrelated intercept and slope (two terms of one factor)
  sleepstudy_uncorrelated = list(data = "sleepstudy",
                                 formula = Reaction ~ Days + (Days || Subject)),
  # prior weights: w = 1 + (Days %% 3) / 2 (tests rebuild the same column)
  sleepstudy_weighted = list(data = "sleepstudy", formula = Reaction ~ Days + (Days | Subject),
                             weights = TRUE)
)

for (name in names(cases)) {
  case <- cases[[name]]
  env <- new.env()
  utils::data(list = case$data, package = "lme4", envir = env)
  data <- as.data.frame(get(case$data, envir = env))
  if (isTRUE(case$weights)) data$w <- 1 + (data$Days %% 3) / 2
  for (reml in c(TRUE, FALSE)) {
    m <- if (isTRUE(case$weights)) {
      suppressMessages(lme4::lmer(case$formula, data = data, REML = reml, weights = w))
    } else {
      suppressMessages(lme4::lmer(case$formula, data = data, REML = reml))
    }
    notes <- character()
    mt <- withCallingHandlers(
      lmerTest::as_lmerModLmerTest(m),
      warning = function(w) {
        notes <<- c(notes, conditionMessage(w))
        invokeRestart("muffleWarning")
      }
    )
    tab <- summary(mt)$coefficients
    value <- list(
      meta = list(case = name, data = case$data, formula = paste(deparse(case$formula),
                                                                 collapse = " "),
                  reml = reml, weights = isTRUE(case$weights),
                  lme4 = as.character(packageVersion("lme4")),
                  lmerTest = as.character(packageVersion("lmerTest"))),
      terms = rownames(tab),
      estimate = unname(tab[, "Estimate"]),
      std_error = unname(tab[, "Std. Error"]),
      df = unname(tab[, "df"]),
      p_value = unname(tab[, "Pr(>|t|)"]),
      theta = unname(getME(m, "theta")),
      is_singular = isSingular(m),
      lmertest_warnings = notes
    )
    path <- file.path(outdir, sprintf("%s_%s.json", name, if (reml) "reml" else "ml"))
    write_json(value, path, digits = NA, auto_unbox = TRUE, na = "null", null = "null")
    message("wrote ", path)
  }
}
