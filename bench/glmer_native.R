# Plain-R side of bench/glmer.py: load VerbAgg, fit the binomial GLMM with lme4 and do the
# whole job: fixed effects with Wald z tests, ranef with conditional SDs, coef, VarCorr,
# logLik, predictions (response scale) for the data; prints the wall-clock and CPU seconds
# and the log-likelihood.
#
#   Rscript bench/glmer_native.R

suppressPackageStartupMessages(library(lme4))

cpu <- function(t) t[["user.self"]] + t[["sys.self"]]
t0 <- proc.time()
env <- new.env()
utils::data("VerbAgg", package = "lme4", envir = env)
data <- env$VerbAgg
m <- glmer(r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item), data = data,
           family = binomial)
beta <- fixef(m)
se <- sqrt(diag(as.matrix(vcov(m))))
z <- beta / se
fixed <- data.frame(estimate = beta, std_error = se, z_value = z,
                    p_value = 2 * pnorm(abs(z), lower.tail = FALSE))
re <- ranef(m, condVar = TRUE)
re_sd <- lapply(re, function(r) {
  pv <- attr(r, "postVar")
  out <- as.data.frame(lapply(seq_len(ncol(r)), function(k) sqrt(pv[k, k, ])))
  names(out) <- names(r)
  out
})
results <- list(
  fixed = fixed, ranef = re, ranef_sd = re_sd, coef = coef(m),
  varcorr = as.data.frame(VarCorr(m)), loglik = logLik(m),
  predicted = predict(m, newdata = data, type = "response")
)
t1 <- proc.time()
cat(sprintf("%.4f %.4f %.10f\n", t1[["elapsed"]] - t0[["elapsed"]], cpu(t1) - cpu(t0),
            as.numeric(logLik(m))))
