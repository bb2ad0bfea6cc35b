# R side of MixedML (pylmer/mixedml/): the lme4 random-effects step of the EM loop.
#
# ONE residual model, derived from R's own parse of `random_effects` (lme4::findbars and
# stats::terms), used by the loop, the final model and predict():
#
#   .pylmer_e ~ 1 + <every covariate of the random part> + <random part>
#
# The covariates of the random part enter as fixed effects too (their random
# coefficients then have mean zero, and the means are estimated jointly with the
# random effects); the intercept is always there, whatever `||`, `0 +` or nesting the
# random part uses.  The grouping / covariate data are bound once (.pylmer_store); per
# iteration only the response vector crosses, and lme4::refit() reuses the model and
# starts the optimizer from the previous theta.

.mixedml_parse <- function(random_effects) {
  f <- tryCatch(
    stats::as.formula(paste("~", random_effects)),
    error = function(e) .pylmer_stop("formula", "cannot parse random_effects '", random_effects,
                                      "': ", conditionMessage(e))
  )
  bars <- lme4::findbars(f)
  if (length(bars) == 0L) {
    .pylmer_stop("formula", "random_effects '", random_effects,
                 "' has no random-effects term such as (1 | group)")
  }
  fixed <- lme4::nobars(f)
  if (!is.null(fixed) && length(attr(stats::terms(fixed), "term.labels"))) {
    .pylmer_stop("formula", "random_effects '", random_effects, "' holds fixed terms (",
                 paste(attr(stats::terms(fixed), "term.labels"), collapse = ", "),
                 "); give only random terms such as (1 + x | group): the estimator is the ",
                 "fixed part")
  }
  list(f = f, bars = bars)
}

# The top-level summands of a formula's right-hand side: a + b + c -> list(a, b, c).
.mixedml_summands <- function(e) {
  if (is.call(e) && identical(e[[1L]], as.name("+")) && length(e) == 3L) {
    c(.mixedml_summands(e[[2L]]), list(e[[3L]]))
  } else {
    list(e)
  }
}

# The residual model as a formula object (the single source of truth).
.mixedml_residual_formula <- function(random_effects, env = parent.frame()) {
  p <- .mixedml_parse(random_effects)
  labels <- unique(unlist(lapply(p$bars, function(b) {
    attr(stats::terms(stats::as.formula(call("~", b[[2L]]))), "term.labels")
  })))
  pieces <- c(list(1), lapply(labels, str2lang), .mixedml_summands(p$f[[2L]]))
  out <- call("~", as.name(".pylmer_e"), Reduce(function(a, b) call("+", a, b), pieces))
  stats::as.formula(out, env = env)
}

# What Python needs to know about the random part, before any data cross.
.mixedml_spec <- function(random_effects) {
  p <- .mixedml_parse(random_effects)
  f <- .mixedml_residual_formula(random_effects)
  terms <- lapply(p$bars, function(b) all.vars(b[[3L]]))
  names(terms) <- vapply(p$bars, function(b) paste(deparse(b[[3L]]), collapse = " "), "")
  list(
    formula = paste(deparse(f, width.cutoff = 500L), collapse = " "),
    vars = all.vars(p$f),
    groups = intersect(all.vars(p$f), unlist(terms)),  # in order of appearance
    covariates = unique(unlist(lapply(p$bars, function(b) all.vars(b[[2L]])))),
    # grouping factors as lme4 names them ("b:a" for a/b) -> the columns they combine
    factors = terms[!duplicated(names(terms))]
  )
}

# Random effects of every term column, keyed "<factor>: <column>" (lme4's term order).
.mixedml_effects <- function(m) {
  b <- as.vector(lme4::getME(m, "b"))
  cnms <- m@cnms
  gp <- m@Gp
  out <- list()
  for (k in seq_along(cnms)) {
    nc <- length(cnms[[k]])
    block <- matrix(b[(gp[k] + 1L):gp[k + 1L]], nrow = nc)
    for (j in seq_len(nc)) out[[paste0(names(cnms)[k], ": ", cnms[[k]][j])]] <- block[j, ]
  }
  out
}

.mixedml_state <- function(m) {
  conv <- m@optinfo$conv$lme4$messages
  vc <- as.data.frame(lme4::VarCorr(m))
  vc <- vc[is.na(vc$var2), , drop = FALSE]
  grp <- sub("\\.[0-9]+$", "", vc$grp)  # lme4 numbers the terms of `||`: g, g.1, g.2
  grp[vc$grp == "Residual"] <- "Residual"
  names <- ifelse(is.na(vc$var1), "var(Residual)", paste0("var(", grp, ": ", vc$var1, ")"))
  list(
    model = m,
    # the residual model's whole contribution: its fixed part X_r gamma plus Z b
    contribution = unname(stats::fitted(m)),
    loglik = as.numeric(stats::logLik(m)),
    sigma = stats::sigma(m),
    variances = stats::setNames(as.list(vc$vcov), names),
    effects = .mixedml_effects(m),
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
  f <- .mixedml_residual_formula(random_effects)
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

# The final state's model, as pylmer.lmer() returns it (no refit: the loop's last fit).
.mixedml_final <- function(model) {
  c(list(model = model), .pylmer_lmer_extract(model))
}

# What predict() needs, kept in Python (no R object): theta per term, and the fixed part
# X_r gamma of the training rows.
.mixedml_terms <- function(model) {
  cnms <- model@cnms
  theta <- lme4::getME(model, "theta")
  nth <- vapply(cnms, function(c) length(c) * (length(c) + 1L) / 2L, 0)
  ends <- cumsum(nth)
  list(
    keys = vapply(seq_along(cnms), function(k) {
      paste0(names(cnms)[k], "|", paste(cnms[[k]], collapse = "+"))
    }, ""),
    theta = lapply(seq_along(cnms), function(k) unname(theta[(ends[k] - nth[k] + 1L):ends[k]])),
    fixed = unname(stats::predict(model, re.form = NA))
  )
}

# Empirical Bayes random effects with the variance parameters fixed: the conditional
# modes b = Lambda (Lambda' Z' Z Lambda + I)^-1 Lambda' Z' r given theta, from the observed
# rows `obs` (residuals r = y - f(X) - X_r gamma: the training rows and any new rows with
# an outcome), evaluated as Z b on the rows of `target`.  Levels without an observed row
# get b = 0.  With the training rows only, b is lme4's own (the same equations as its
# penalised least squares at the fitted theta and gamma).
.mixedml_eb <- function(random_effects, keys, theta, obs_name, r, target_name) {
  re <- .mixedml_eb_terms(random_effects, keys, theta, obs_name, target_name)
  a <- Matrix::tcrossprod(re$lz) + Matrix::Diagonal(nrow(re$lz))
  u <- Matrix::solve(Matrix::Cholesky(Matrix::forceSymmetric(a)), re$lz %*% r)
  re$at_target(u)
}

# The random-effects terms of the observed rows `obs` and the rows of `target` together,
# with the fitted relative covariance (theta, matched to the fitted terms by `keys`):
# lz = Lambda' Z' on the observed rows, and at_target(u), which evaluates spherical
# random effects u as Z Lambda u on the target rows (levels without an observed row: 0).
# Shared by the Gaussian (.mixedml_eb) and the GLMM (.mixedml_glmm_eb) estimates.
.mixedml_eb_terms <- function(random_effects, keys, theta, obs_name, target_name) {
  obs <- get(obs_name, envir = .pylmer_store)
  target <- get(target_name, envir = .pylmer_store)
  p <- .mixedml_parse(random_effects)
  groups <- unique(unlist(lapply(p$bars, function(b) all.vars(b[[3L]]))))
  n_obs <- nrow(obs)
  both <- rbind(obs[names(target)], target)
  for (g in groups) both[[g]] <- factor(as.character(both[[g]]))
  rt <- lme4::mkReTrms(p$bars, both, reorder.terms = FALSE)
  mine <- vapply(seq_along(rt$cnms), function(k) {
    paste0(names(rt$cnms)[k], "|", paste(rt$cnms[[k]], collapse = "+"))
  }, "")
  th <- unlist(theta[match(mine, keys)])
  if (anyNA(match(mine, keys)) || length(th) != length(rt$theta)) {
    stop("the random-effects terms of the new data do not match the fitted model")
  }
  lambdat <- rt$Lambdat
  lambdat@x <- th[rt$Lind]
  zt <- rt$Zt
  list(
    lz = lambdat %*% zt[, seq_len(n_obs), drop = FALSE],
    at_target = function(u) {
      b <- Matrix::crossprod(lambdat, u)
      as.vector(Matrix::crossprod(zt[, n_obs + seq_len(nrow(target)), drop = FALSE], b))
    }
  )
}
