# R side of MixedMLRegressor (pylmer/mixedml.py): the random-effects step of the EM loop.
# The grouping / covariate data are bound once (.pylmer_store); per iteration only the
# response vector crosses, and lme4::refit() reuses the model structure and starts the
# optimizer from the previous theta.

.mixedml_vars <- function(random_effects) {
  f <- tryCatch(
    stats::as.formula(paste("~ 0 +", random_effects)),
    error = function(e) .pylmer_stop("formula", "cannot parse random_effects ", random_effects,
                                      ": ", conditionMessage(e))
  )
  bars <- lme4::findbars(f)
  if (length(bars) == 0L) {
    .pylmer_stop("formula", "random_effects ", random_effects,
                 " has no random-effects term such as (1 | group)")
  }
  list(
    fixed = paste(vapply(bars, function(b) paste(deparse(b[[2L]]), collapse = " "), ""),
                  collapse = " + "),
    vars = all.vars(f),
    groups = unique(unlist(lapply(bars, function(b) all.vars(b[[3L]]))))
  )
}

# e ~ <covariates of the random part> + <random part>: the random-part covariates also
# enter as fixed effects, so that the means of the random coefficients are estimated
# jointly with them (see the Notes of MixedMLRegressor).
.mixedml_formula <- function(random_effects, centred = TRUE) {
  f <- stats::as.formula(paste("~ 0 +", random_effects))
  fixed <- if (centred) {
    lhs <- vapply(lme4::findbars(f), function(b) paste(deparse(b[[2L]]), collapse = " "), "")
    paste(lhs, collapse = " + ")
  } else {
    "0"
  }
  stats::as.formula(paste(".pylmer_e ~", fixed, "+", random_effects), env = parent.frame())
}

.mixedml_state <- function(m) {
  conv <- m@optinfo$conv$lme4$messages
  list(
    model = m,
    b = as.vector(lme4::getME(m, "b")),
    # the residual model's whole contribution, its fixed part X_r gamma plus Z u
    zu = unname(stats::fitted(m)),
    loglik = as.numeric(stats::logLik(m)),
    sigma = stats::sigma(m),
    theta = unname(lme4::getME(m, "theta")),
    varcorr = as.data.frame(lme4::VarCorr(m)),
    singular = lme4::isSingular(m),
    messages = if (is.null(conv)) character() else as.character(conv)
  )
}

# lme4's own checks, without the derivatives that only feed the convergence checks
.mixedml_control <- function() lme4::lmerControl(calc.derivs = FALSE)

# First random-effects fit: builds the model once.
.mixedml_start <- function(data_name, random_effects, resp, reml) {
  data <- get(data_name, envir = .pylmer_store)
  data[[".pylmer_e"]] <- resp
  f <- .mixedml_formula(random_effects)
  m <- tryCatch(
    suppressMessages(suppressWarnings(lme4::lmer(
      f, data = data, REML = reml, control = .mixedml_control()
    ))),
    # name the column at fault (one-level factor, as many levels as rows, ...)
    error = function(e) .pylmer_lmer_explain(e, f, data, intersect(all.vars(f), names(data)))
  )
  .mixedml_state(m)
}

# Later fits: same model, new response, warm start from the previous theta.
.mixedml_step <- function(model, resp) {
  m <- suppressMessages(suppressWarnings(lme4::refit(model, newresp = resp)))
  .mixedml_state(m)
}

# Empirical Bayes random effects of new groups: the relative covariance (theta) is
# kept from training; the modes are computed on the given residuals without optimising.
# `obs` holds the residuals y - f(X) - (fixed part of the residual model); returns Z u for
# the rows of `target_name` (0 for levels absent from the observed rows).
.mixedml_new_groups <- function(theta, obs_name, target_name, random_effects, reml) {
  obs <- get(obs_name, envir = .pylmer_store)
  target <- get(target_name, envir = .pylmer_store)
  # Grouping columns as integer codes (shared by obs and target): a factor with a single
  # level (one new subject) would make model.matrix() fail on its contrasts.
  for (g in .mixedml_vars(random_effects)$groups) {
    levels <- unique(c(as.character(obs[[g]]), as.character(target[[g]])))
    obs[[g]] <- match(as.character(obs[[g]]), levels)
    target[[g]] <- match(as.character(target[[g]]), levels)
  }
  ctrl <- lme4::lmerControl(check.nobs.vs.nRE = "ignore", check.nobs.vs.nlev = "ignore",
                            check.nlev.gtr.1 = "ignore", check.rankX = "ignore")
  lf <- lme4::lFormula(.mixedml_formula(random_effects, centred = FALSE), data = obs, REML = reml,
                       control = ctrl)
  devfun <- do.call(lme4::mkLmerDevfun, lf)
  opt <- list(par = theta, fval = devfun(theta), conv = 0L, message = "fixed theta")
  fit <- lme4::mkMerMod(environment(devfun), opt, lf$reTrms, fr = lf$fr)
  unname(stats::predict(fit, newdata = target, allow.new.levels = TRUE))
}
