# Plain-R baseline of bench/power.py (lme4 + lmerTest, no pylmer code): the power loop of
# a sleepstudy-sized lmer -- responses drawn once with simulate(m, nsim, seed = 1,
# newparams) with the Days slope set to 4, then for each: refit() and lmerTest's
# Satterthwaite t test of Days (the call's data `d` holds the draw, as lmerTest
# re-evaluates the call).  Serial.  Usage: Rscript bench/power_native.R <nsim>
# Prints "<wall seconds> <cpu seconds> <power> <sum of p-values>" of the timed part
# (simulate + loop; R's start-up, library() and the model fit are not timed).
suppressMessages({
  library(lme4)
  library(lmerTest)
})
nsim <- as.integer(commandArgs(trailingOnly = TRUE)[1L])
d <- sleepstudy
m <- lme4::lmer(Reaction ~ Days + (Days | Subject), data = d)
t0 <- proc.time()
p <- list(beta = replace(fixef(m), "Days", 4), theta = getME(m, "theta"), sigma = sigma(m))
Y <- simulate(m, nsim = nsim, seed = 1, newparams = p)
pv <- suppressMessages(suppressWarnings(vapply(seq_len(nsim), function(j) {
  d$Reaction <- Y[[j]]
  f <- lme4::refit(m, Y[[j]])
  coef(summary(lmerTest::as_lmerModLmerTest(f)))["Days", "Pr(>|t|)"]
}, 0)))
t <- proc.time() - t0
cat(sprintf("%.3f %.3f %.6f %.10f\n", t[["elapsed"]], t[["user.self"]] + t[["sys.self"]],
            mean(pv < 0.05), sum(pv)))
