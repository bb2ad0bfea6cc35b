# Plain-R side of bench/scale.py: read the CSV, fit y ~ x + (1 + x | g) (REML) and
# extract what pylmer.lmer() gives: lmerTest's Satterthwaite table, ranef with
# conditional SDs, coef, VarCorr, fitted, residuals.  lme4's fit options as pylmer's on
# data this size (calc.derivs = FALSE for >= 1e4 observations, lme4 >= 1.1-38's default).
# Usage: Rscript bench/scale_native.R <csv>; prints "read=<s> fit=<s> check=<slope>".
suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
})
path <- commandArgs(trailingOnly = TRUE)[1L]
t0 <- proc.time()[["elapsed"]]
data <- utils::read.csv(path)
data$g <- factor(data$g)
t1 <- proc.time()[["elapsed"]]
ctrl <- lmerControl(calc.derivs = nrow(data) < 1e4)
m <- lmerTest::lmer(y ~ x + (1 + x | g), data = data, control = ctrl)
table <- coef(summary(m))
re <- ranef(m, condVar = TRUE)
pv <- attr(re$g, "postVar")
ranef_sd <- data.frame(sqrt(pv[1, 1, ]), sqrt(pv[2, 2, ]))
results <- list(table = table, ranef = re, ranef_sd = ranef_sd, coef = coef(m),
                varcorr = as.data.frame(VarCorr(m)), fitted = fitted(m),
                residuals = residuals(m), vcov = vcov(m))
t2 <- proc.time()[["elapsed"]]
cat(sprintf("read=%.4f fit=%.4f check=%.10f df=%.6f\n", t1 - t0, t2 - t1, table["x", 1],
            table["x", "df"]))
