# Reference values for tests/test_glmmtmb.py, computed in plain R with glmmTMB (no pylmer
# code).
#
#   Rscript tests/reference_glmmtmb.R OUTDIR
#
# Writes OUTDIR/<case>.json: a zero-inflated Poisson and a zero-inflated nbinom2 with a
# dispersion formula on glmmTMB's Salamanders, and simulated beta and tweedie GLMMs (their
# data are written too).  The tests run it on their own machine through tests/_refcache.py.

suppressPackageStartupMessages({
  library(glmmTMB)
  library(jsonlite)
})

frame_json <- function(df) {
  list(index = rownames(df), columns = lapply(as.list(df), function(x) {
    if (is.factor(x)) as.character(x) else x
  }), names = names(df))
}
coef_json <- function(tab) {
  if (is.null(tab)) return(NULL)
  frame_json(data.frame(estimate = tab[, 1L], std_error = tab[, 2L], z_value = tab[, 3L],
                        p_value = tab[, 4L], row.names = rownames(tab)))
}

simulated <- function() {
  set.seed(20261203)
  n_g <- 25L
  g <- factor(sprintf("g%02d", rep(seq_len(n_g), each = 16L)))
  x <- round(stats::runif(length(g), -1, 1), 4)
  u <- stats::rnorm(n_g, sd = 0.5)[as.integer(g)]
  mu <- stats::plogis(-0.3 + 0.8 * x + u)
  phi <- 12
  beta_y <- round(pmin(pmax(stats::rbeta(length(g), mu * phi, (1 - mu) * phi), 1e-4), 1 - 1e-4), 6)
  # tweedie (compound Poisson-gamma), power 1.5, mean mu2, dispersion 1.2
  mu2 <- exp(0.5 + 0.6 * x + u)
  p <- 1.5
  disp <- 1.2
  lambda <- mu2^(2 - p) / (disp * (2 - p))
  shape <- (2 - p) / (p - 1)
  scale <- disp * (p - 1) * mu2^(p - 1)
  counts <- stats::rpois(length(g), lambda)
  tw_y <- round(vapply(seq_along(counts), function(i) {
    if (counts[i] == 0L) 0 else sum(stats::rgamma(counts[i], shape = shape, scale = scale[i]))
  }, 0), 6)
  list(beta = data.frame(y = beta_y, x = x, g = g), tweedie = data.frame(y = tw_y, x = x, g = g))
}

sims <- simulated()
data(Salamanders, package = "glmmTMB")
sal <- Salamanders
cases <- list(
  zip = list(data = sal, formula = count ~ spp + mined + (1 | site),
             zi = ~spp + mined, disp = NULL, family = quote(poisson()), group = "site",
             emmeans = "spp", smaller = count ~ mined + (1 | site)),
  zinb2_disp = list(data = sal, formula = count ~ spp + mined + (1 | site),
                    zi = ~mined, disp = ~spp, family = quote(nbinom2()), group = "site",
                    emmeans = "mined", smaller = count ~ spp + (1 | site)),
  beta = list(data = sims$beta, formula = y ~ x + (1 | g), zi = NULL, disp = NULL,
              family = quote(beta_family()), group = "g", write_data = TRUE,
              smaller = y ~ 1 + (1 | g)),
  tweedie = list(data = sims$tweedie, formula = y ~ x + (1 | g), zi = NULL, disp = NULL,
                 family = quote(tweedie()), group = "g", write_data = TRUE,
                 smaller = y ~ 1 + (1 | g))
)

fit <- function(case, formula) {
  call <- bquote(glmmTMB(.(formula), data = data, family = .(case$family)))
  if (!is.null(case$zi)) call$ziformula <- case$zi
  if (!is.null(case$disp)) call$dispformula <- case$disp
  eval(call, list(data = case$data))
}

run_case <- function(name, case) {
  m <- fit(case, case$formula)
  s <- summary(m)
  co <- s$coefficients
  vc <- VarCorr(m)$cond[[case$group]]
  re <- as.data.frame(ranef(m, condVar = TRUE))
  re <- re[re$component == "cond", ]
  ll <- stats::logLik(m)
  nd <- utils::head(case$data, 3L)
  nd[[case$group]] <- as.character(nd[[case$group]])
  nd[[case$group]][3L] <- "new"
  pr <- function(type, ...) {
    unname(as.numeric(stats::predict(m, newdata = nd, type = type, allow.new.levels = TRUE, ...)))
  }
  ci <- stats::confint(m, method = "wald")
  smaller <- fit(case, case$smaller)
  tab <- stats::anova(smaller, m)
  sim <- stats::simulate(m, nsim = 2L, seed = 42L)
  V <- stats::vcov(m)$cond
  out <- list(
    data = if (isTRUE(case$write_data)) frame_json(case$data),
    fixef = coef_json(co$cond),
    fixef_zi = coef_json(co$zi),
    fixef_disp = if (!is.null(case$disp)) coef_json(co$disp),
    varcorr_sd = unname(attr(vc, "stddev")),
    ranef = list(index = as.character(re$grp), condval = re$condval, condsd = re$condsd),
    sigma = stats::sigma(m),
    family_params = if (name == "tweedie") unname(family_params(m)),
    loglik = as.numeric(ll),
    npar = attr(ll, "df"),
    aic = stats::AIC(m),
    bic = stats::BIC(m),
    nobs = stats::nobs(m),
    df_residual = stats::df.residual(m),
    vcov = list(names = rownames(V), values = unname(V)),
    fitted = unname(stats::fitted(m)),
    residuals = unname(stats::residuals(m, type = "response")),
    predict_response = pr("response"),
    predict_link = pr("link"),
    predict_conditional = pr("conditional"),
    predict_zprob = if (!is.null(case$zi)) pr("zprob"),
    predict_fixed = pr("response", re.form = NA),
    confint = list(names = rownames(ci), lower = unname(ci[, 1L]), upper = unname(ci[, 2L]),
                   estimate = unname(ci[, 3L])),
    anova = list(chisq = tab$Chisq[2L], df = tab[["Chi Df"]][2L], p = tab[["Pr(>Chisq)"]][2L],
                 loglik = tab$logLik),
    simulate = unname(lapply(sim, as.numeric)),
    converged = m$fit$convergence == 0 && m$sdr$pdHess
  )
  if (!is.null(case$emmeans)) {
    em <- as.data.frame(summary(emmeans::emmeans(m, case$emmeans)))
    out$emmeans <- list(level = as.character(em[[1L]]), emmean = em$emmean, se = em$SE)
  }
  out
}

args <- commandArgs(trailingOnly = TRUE)
outdir <- if (length(args)) args[[1L]] else "reference_glmmtmb"
dir.create(outdir, showWarnings = FALSE, recursive = TRUE)
for (name in names(cases)) {
  value <- run_case(name, cases[[name]])
  jsonlite::write_json(value, file.path(outdir, paste0(name, ".json")), digits = NA,
                       auto_unbox = TRUE, na = "null", null = "null")
}
