# Plain-R side of bench/lmer.py: load InstEval, fit with lme4 and extract the same
# quantities pylmer extracts (everything but the Satterthwaite df); prints the wall-clock
# and CPU seconds.
#
#   Rscript bench/lmer_native.R

suppressPackageStartupMessages(library(lme4))

cpu <- function(t) t[["user.self"]] + t[["sys.self"]]
t0 <- proc.time()
env <- new.env()
utils::data("InstEval", package = "lme4", envir = env)
data <- env$InstEval
m <- lmer(y ~ service + (1 | s) + (1 | d) + (1 | dept), data = data)
beta <- fixef(m)
V <- as.matrix(vcov(m))
se <- sqrt(diag(V))
fixed <- data.frame(estimate = beta, std_error = se, t_value = beta / se)
re <- ranef(m, condVar = TRUE)
re_sd <- lapply(re, function(r) {
  pv <- attr(r, "postVar")
  out <- as.data.frame(lapply(seq_len(ncol(r)), function(k) sqrt(pv[k, k, ])))
  names(out) <- names(r)
  out
})
results <- list(
  fixed = fixed, ranef = re, ranef_sd = re_sd, coef = coef(m),
  varcorr = as.data.frame(VarCorr(m)), sigma = sigma(m), theta = getME(m, "theta"),
  loglik = logLik(m), aic = AIC(m), bic = BIC(m), deviance = suppressWarnings(deviance(m)),
  reml = REMLcrit(m), nobs = nobs(m), ngrps = ngrps(m), vcov = V, fitted = fitted(m),
  residuals = residuals(m), scaled = residuals(m, type = "pearson", scaled = TRUE),
  singular = isSingular(m), messages = m@optinfo$conv$lme4$messages
)
t1 <- proc.time()
cat(sprintf("%.4f %.4f\n", t1[["elapsed"]] - t0[["elapsed"]], cpu(t1) - cpu(t0)))
