# R side of MixedML for non-Gaussian targets (pylmer/mixedml/glmm_step.py): the glmer
# random-effects step of the EM loop, the final model and empirical Bayes for predict().
#
# The residual model is the Gaussian step's (.mixedml_residual_formula in mixedml.R, from
# R's own parse of `random_effects`) with the estimator's fixed part as an offset:
#
#   .pylmer_e ~ 1 + <every covariate of the random part> + <random part> + offset(.pylmer_f)
#
# .pylmer_e is the outcome (0/1 or counts), .pylmer_f the estimator's predictions on the
# link scale.  lme4::refit() cannot change an offset (it rebuilds the response module
# from the stored model frame), so every step fits glmer again on the bound data with the
# new offset, started from the previous theta and fixed effects.

.mixedml_glmm_formula <- function(random_effects, env = parent.frame()) {
  f <- .mixedml_residual_formula(random_effects, env = env)
  f[[3L]] <- call("+", f[[3L]], call("offset", as.name(".pylmer_f")))
  environment(f) <- env
  f
}

.mixedml_glmm_family <- function(family) {
  switch(family,
    binomial = stats::binomial(),
    poisson = stats::poisson(),
    .pylmer_stop("data", "MixedML supports the families binomial and poisson, not '",
                 family, "'")
  )
}

# The part of the Laplace score that the working residual y - mu misses.  glmer's Laplace
# log-likelihood is  log p(y | u) - |u|^2 / 2 - log|L|,  LL' = A = Lambda'Z'WZ Lambda + I,
# at the conditional modes u.  Its derivative along a change d of the fixed part (the
# linear predictor moving by d, with u following its modes) is  d'(y - mu) + d'(I - W P) s
# with  P = Z Lambda A^-1 Lambda'Z',  s_i = -h_i w'_i / 2,  h = diag(P) and  w'_i = dw/deta
# (canonical links: w = V(mu), w' = V'(mu) w).  Returning (I - W P) s lets the estimator
# fit the Laplace score itself: with a linear estimator the loop's fixed point is glmer's
# own Laplace fit of y ~ x + <random part>.
.mixedml_glmm_correction <- function(m, family) {
  eta <- unname(stats::predict(m, type = "link"))
  mu <- .mixedml_glmm_family(family)$linkinv(eta)
  if (family == "binomial") {
    w <- mu * (1 - mu)
    dw <- w * (1 - 2 * mu)
  } else {
    w <- mu
    dw <- mu
  }
  lz <- lme4::getME(m, "Lambdat") %*% lme4::getME(m, "Zt")
  a <- Matrix::tcrossprod(lz %*% Matrix::Diagonal(x = sqrt(w))) + Matrix::Diagonal(nrow(lz))
  ch <- Matrix::Cholesky(Matrix::forceSymmetric(a), LDL = FALSE, perm = TRUE)
  half <- Matrix::solve(ch, Matrix::solve(ch, lz, system = "P"), system = "L")
  h <- Matrix::colSums(half^2)
  s <- -0.5 * h * dw
  ps <- as.vector(Matrix::crossprod(lz, Matrix::solve(ch, lz %*% s, system = "A")))
  s - w * ps
}

.mixedml_glmm_state <- function(m, family) {
  conv <- m@optinfo$conv$lme4$messages
  vc <- as.data.frame(lme4::VarCorr(m))
  vc <- vc[is.na(vc$var2), , drop = FALSE]
  grp <- sub("\\.[0-9]+$", "", vc$grp)  # lme4 numbers the terms of `||`: g, g.1, g.2
  names <- paste0("var(", grp, ": ", vc$var1, ")")
  offset <- m@resp$offset
  list(
    model = m,
    # the residual model's contribution on the link scale: X_r gamma + Z b (no offset)
    contribution = unname(stats::predict(m, type = "link")) - offset,
    loglik = as.numeric(stats::logLik(m)),
    variances = stats::setNames(as.list(vc$vcov), names),
    effects = .mixedml_effects(m),
    singular = lme4::isSingular(m),
    correction = .mixedml_glmm_correction(m, family),
    messages = if (is.null(conv)) character() else as.character(conv)
  )
}

# One random-effects fit given the fixed part `fixed` (link scale).  `previous`: the
# previous step's model (warm start from its theta and fixed effects) or NULL.
.mixedml_glmm_fit <- function(data_name, random_effects, resp, fixed, family, nAGQ = 1L,
                              previous = NULL) {
  data <- get(data_name, envir = .pylmer_store)
  data[[".pylmer_e"]] <- resp
  data[[".pylmer_f"]] <- fixed
  env <- new.env(parent = globalenv())
  env$data <- data
  f <- .mixedml_glmm_formula(random_effects, env = env)
  fam <- .mixedml_glmm_family(family)
  start <- if (is.null(previous)) NULL else {
    list(theta = lme4::getME(previous, "theta"), fixef = lme4::fixef(previous))
  }
  # calc.derivs = FALSE: the derivatives only feed lme4's convergence checks, and the
  # loop's own stopping rule judges convergence
  ctrl <- lme4::glmerControl(calc.derivs = FALSE)
  call <- bquote(lme4::glmer(.(f), data = data, family = .(fam), nAGQ = .(as.integer(nAGQ)),
                             control = .(ctrl), start = .(start)))
  m <- tryCatch(
    suppressMessages(suppressWarnings(eval(call, env))),
    error = function(e) .pylmer_lmer_explain(e, f, data, intersect(all.vars(f), names(data)))
  )
  .mixedml_glmm_state(m, family)
}

# The final state's model with everything GlmerModel exposes (no refit: the loop's fit).
.mixedml_glmm_final <- function(model) {
  c(list(model = model,
         residual_formula = paste(deparse(stats::formula(model), width.cutoff = 500L),
                                  collapse = " ")),
    .pylmer_glmer_extract(model))
}

# What predict() needs, kept in Python: theta per term (as .mixedml_terms) and the
# residual model's own fixed part X_r gamma of the training rows (offset removed).
.mixedml_glmm_terms <- function(model) {
  out <- .mixedml_terms(model)
  out$fixed <- out$fixed - model@resp$offset
  out
}

# Empirical Bayes random effects with the variance parameters fixed: the conditional
# modes u of the spherical random effects maximise
#   sum_i log p(y_i | eta_i) - |u|^2 / 2,   eta = offset + Z Lambda u
# over the observed rows `obs` (the offset holds the whole fixed part f(X) + X_r gamma);
# Fisher scoring with step halving, as lme4's PIRLS.  The result is evaluated as Z b on
# the rows of `target`; levels without an observed row get b = 0.  With the training rows
# only and the fit's theta and offsets, these are lme4's own conditional modes.
.mixedml_glmm_eb <- function(random_effects, keys, theta, family, obs_name, y, offset,
                             target_name) {
  fam <- .mixedml_glmm_family(family)
  re <- .mixedml_eb_terms(random_effects, keys, theta, obs_name, target_name)
  lz <- re$lz
  n_obs <- ncol(lz)
  objective <- function(u) {
    mu <- fam$linkinv(offset + as.vector(Matrix::crossprod(lz, u)))
    -0.5 * sum(fam$dev.resids(y, mu, rep(1, n_obs))) - 0.5 * sum(u^2)
  }
  u <- rep(0, nrow(lz))
  current <- objective(u)
  for (it in seq_len(100L)) {
    eta <- offset + as.vector(Matrix::crossprod(lz, u))
    mu <- fam$linkinv(eta)
    dmu <- fam$mu.eta(eta)
    v <- fam$variance(mu)
    grad <- as.vector(lz %*% ((y - mu) * dmu / v)) - u
    h <- Matrix::tcrossprod(lz %*% Matrix::Diagonal(x = sqrt(dmu^2 / v))) +
      Matrix::Diagonal(nrow(lz))
    delta <- as.vector(Matrix::solve(Matrix::Cholesky(Matrix::forceSymmetric(h)), grad))
    step <- 1
    repeat {
      cand <- u + step * delta
      value <- objective(cand)
      if (value >= current || step < 1e-10) break
      step <- step / 2
    }
    if (value < current) break  # no ascent left at this precision: u is the mode
    u <- cand
    current <- value
    if (max(abs(step * delta)) < 1e-10) break
  }
  re$at_target(u)
}
