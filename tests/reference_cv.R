# Reference values for tests/test_compare.py's cross-validation from plain R (lme4; no
# pylmer code): for each fold of a CSV's `fold` column, the formula fitted by lmer (or
# glmer with the family) on the other folds and predicted on it (re.form = NA: the held-out
# groups are new), RMSE and, for binomial, log-loss.
# Usage: Rscript tests/reference_cv.R <data.csv> <formula> <family or "none"> <out.json>
suppressMessages({
  library(lme4)
  library(jsonlite)
})
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1L], stringsAsFactors = TRUE)
f <- stats::as.formula(args[2L])
family <- args[3L]
resp <- all.vars(f)[1L]
rmse <- ll <- numeric()
for (k in sort(unique(d$fold))) {
  train <- d[d$fold != k, ]
  test <- d[d$fold == k, ]
  m <- if (family == "none") lmer(f, data = train) else glmer(f, data = train, family = family)
  mu <- predict(m, newdata = test, re.form = NA, type = "response")
  y <- test[[resp]]
  rmse <- c(rmse, sqrt(mean((y - mu)^2)))
  if (family == "binomial") ll <- c(ll, -mean(y * log(mu) + (1 - y) * log(1 - mu)))
}
writeLines(toJSON(list(rmse = rmse, log_loss = ll), digits = NA), args[4L])
