# merTools' predictInterval on the calibration task of bench/inference.py: sleepstudy,
# leave one subject out, 95% prediction intervals for the left-out subject (a new level),
# residual variance included.  Prints the coverage.
#
#   Rscript bench/inference_mertools.R

suppressPackageStartupMessages({
  library(lme4)
  library(merTools)
})
hits <- logical()
for (s in levels(sleepstudy$Subject)) {
  train <- sleepstudy[sleepstudy$Subject != s, ]
  test <- sleepstudy[sleepstudy$Subject == s, ]
  train$Subject <- droplevels(train$Subject)
  m <- lmer(Reaction ~ Days + (Days | Subject), train)
  pi <- suppressWarnings(predictInterval(m, test, level = 0.95, n.sims = 2000,
                                         include.resid.var = TRUE, seed = 1))
  hits <- c(hits, test$Reaction >= pi$lwr & test$Reaction <= pi$upr)
}
cat(mean(hits), "\n")
