# R side of pylmer.parallel: parametric bootstrap (as lme4's bootMer and pbkrtest's
# PBmodcomp do it) and many responses fitted with lme4's refit.  The parent process
# simulates; worker processes (each with its own embedded R) refit chunks of draws or
# responses and return plain matrices / data frames.  Sourced by pylmer/_r.py after
# bridge.R and lmer.R into the private environment.

# ------------------------------------------------------------------ bootstrap

# The control bootMer() refits with: the model call's control (a value in pylmer's calls).
.pylmer_par_control <- function(m) {
  ctl <- m@call$control
  if (is.language(ctl)) ctl <- eval(ctl, environment(stats::formula(m)))
  ctl
}

# Names of the variance parameters: lme4's confint names (".sig01", ..., ".sigma") when
# `old`, else the readable ones ("sd_(Intercept)|Subject", "cor_...", "sigma").
.pylmer_par_vnames <- function(m, old = TRUE) {
  ntp <- length(lme4::getME(m, "theta"))
  # a GLMM without a scale (binomial, Poisson) has no sigma (lme4's confint boot statistic)
  sigma <- if (.pylmer_par_has_sigma(m)) (if (old) ".sigma" else "sigma")
  if (old) return(c(sprintf(".sig%02d", seq_len(ntp)), sigma))
  # the theta order (Cv_to_Sv): per term, the lower triangle column by column
  # (sd1, cor21, cor31, ..., sd2, cor32, ...)
  out <- character()
  for (g in seq_along(m@cnms)) {
    cn <- m@cnms[[g]]
    grp <- names(m@cnms)[g]
    k <- length(cn)
    for (j in seq_len(k)) {
      for (i in j:k) {
        out <- c(out, if (i == j) paste0("sd_", cn[i], "|", grp)
                      else paste0("cor_", cn[i], ".", cn[j], "|", grp))
      }
    }
  }
  c(out, sigma)
}

.pylmer_par_has_sigma <- function(m) {
  lme4::isLMM(m) || as.logical(m@devcomp$dims[["useSc"]])
}

# The statistic of lme4's confint(method = "boot"): standard deviations / correlations of
# the random effects, sigma, fixed effects.
.pylmer_par_stat <- function(x, vn) {
  nvec <- lengths(x@cnms)
  ss <- if (lme4::isLMM(x)) {
    lme4::Cv_to_Sv(x@theta, n = nvec, s = stats::sigma(x))
  } else if (.pylmer_par_has_sigma(x)) {
    c(lme4::Cv_to_Sv(x@theta, n = nvec), stats::sigma(x))  # as confint.merMod's bootFun
  } else {
    lme4::Cv_to_Sv(x@theta, n = nvec)
  }
  c(stats::setNames(ss, vn), lme4::fixef(x))
}

# One column per draw: a cbind(successes, failures) draw as its successes, a factor
# draw as 0/1 (.pylmer_par_resp turns them back into what refit() takes).
.pylmer_par_draws <- function(ss) {
  cols <- lapply(ss, function(s) {
    if (is.matrix(s)) s[, 1L] else if (is.factor(s)) as.numeric(s != levels(s)[1L]) else s
  })
  Y <- do.call(cbind, cols)
  dimnames(Y) <- NULL
  Y
}

# Simulated responses exactly as bootMer(x, nsim = nsim, seed = seed) draws them (one
# column per draw, the rows lme4 used), and the statistic of the fitted model.
.pylmer_boot_setup <- function(m, nsim, seed = NULL, old_names = TRUE) {
  if (inherits(m, "glmmTMB")) return(.pylmer_tmb_boot_setup(m, nsim, seed))  # glmmtmb.R
  if (lme4::isNLMM(m)) {
    .pylmer_stop("argument", "bootstrap takes lmer, glmer and glmmtmb fits, not an nlmer ",
                 "fit (lme4 has no refit() for nlmer models)")
  }
  if (!is.null(seed)) {
    set.seed(seed)
  } else if (!exists(".Random.seed", envir = globalenv())) {
    stats::runif(1)
  }
  ss <- stats::simulate(m, nsim = nsim, na.action = stats::na.exclude, use.u = FALSE)
  Y <- .pylmer_par_draws(ss)
  na_act <- attr(m@frame, "na.action")
  if (!is.null(na_act) && nrow(Y) != stats::nobs(m)) Y <- Y[-na_act, , drop = FALSE]
  dimnames(Y) <- NULL
  vn <- .pylmer_par_vnames(m, old_names)
  list(Y = Y, t0 = .pylmer_par_stat(m, vn))
}

# Run `expr` capturing warnings and messages; returns list(value, error, conditions).
.pylmer_par_try <- function(expr) {
  conds <- character()
  value <- withCallingHandlers(
    tryCatch(expr, error = function(e) structure(conditionMessage(e), class = "par_error")),
    warning = function(w) {
      conds <<- c(conds, conditionMessage(w))
      invokeRestart("muffleWarning")
    },
    message = function(msg) {
      conds <<- c(conds, sub("\n$", "", conditionMessage(msg)))
      invokeRestart("muffleMessage")
    }
  )
  if (inherits(value, "par_error")) {
    return(list(value = NULL, error = unclass(value), conditions = unique(conds)))
  }
  list(value = value, error = NA_character_, conditions = unique(conds))
}

.pylmer_par_resp <- function(m, y) {
  # a cbind(successes, failures) model: y holds the successes; the trials are the model's
  resp <- stats::model.response(m@frame)
  if (is.matrix(resp) && is.null(dim(y))) y <- cbind(y, rowSums(resp) - y)
  # y holds one value per used row: stop refit() from dropping the NA rows a second time
  attr(y, "na.action") <- attr(m@frame, "na.action")
  y
}

# Refit the model to each column of Y (bootMer's refit(x, y, control = <call's control>))
# and return the statistics (NA rows for failed refits), errors and warnings per draw.
.pylmer_boot_chunk <- function(m, Y, old_names = TRUE) {
  if (inherits(m, "glmmTMB")) return(.pylmer_tmb_boot_chunk(m, Y))
  Y <- as.matrix(Y)
  control <- .pylmer_par_control(m)
  vn <- .pylmer_par_vnames(m, old_names)
  t0 <- .pylmer_par_stat(m, vn)
  k <- ncol(Y)
  out <- matrix(NA_real_, k, length(t0), dimnames = list(NULL, names(t0)))
  err <- rep(NA_character_, k)
  cond <- rep(NA_character_, k)
  for (i in seq_len(k)) {
    y <- .pylmer_par_resp(m, Y[, i])
    r <- .pylmer_par_try(.pylmer_par_stat(lme4::refit(m, y, control = control), vn))
    if (!is.null(r$value)) out[i, ] <- r$value
    err[i] <- r$error
    if (length(r$conditions)) cond[i] <- paste(r$conditions, collapse = "; ")
  }
  list(t = out, error = err, conditions = cond)
}

# Refit a model to one simulated response and extract everything (bootstrap with a user
# function of the refitted model).
.pylmer_boot_refit_full <- function(m, y) {
  if (inherits(m, "glmmTMB")) {
    model <- .pylmer_tmb_refit_model(m, y)
    return(c(list(model = model), .pylmer_tmb_extract(model)))
  }
  model <- lme4::refit(m, .pylmer_par_resp(m, as.numeric(y)), control = .pylmer_par_control(m))
  extract <- if (lme4::isGLMM(model)) .pylmer_glmer_extract else .pylmer_lmer_extract
  c(list(model = model), extract(model))
}

# Percentile (or basic / normal) intervals from bootstrap draws, computed by lme4's
# confint() method of bootMer objects (boot::boot.ci), as confint(method = "boot") does.
.pylmer_boot_ci <- function(t0, t, names, level = 0.95, type = "perc") {
  t <- as.matrix(t)
  names(t0) <- colnames(t) <- names
  bb <- structure(list(t0 = t0, t = t, R = nrow(t), sim = "parametric"),
                  class = c("bootMer", "boot"))
  as.matrix(stats::confint(bb, level = level, type = type))
}

# ------------------------------------------------------------------ PB likelihood ratio

# Responses simulated from the small (null) model as pbkrtest's PBrefdist draws them
# (`set.seed(seed); PBmodcomp(large, small, nsim)`), and the observed statistic.
.pylmer_pb_setup <- function(small, large, nsim, seed = NULL) {
  if (!is.null(seed)) set.seed(seed)
  Y <- .pylmer_par_draws(stats::simulate(small, nsim = nsim))
  ll_small <- stats::logLik(small, REML = FALSE)
  ll_large <- stats::logLik(large, REML = FALSE)
  list(Y = Y, stat = 2 * (as.numeric(ll_large) - as.numeric(ll_small)),
       df = attr(ll_large, "df") - attr(ll_small, "df"))
}

# pbkrtest's reference distribution: 2 (logLik(large) - logLik(small)) refitted to each
# simulated response (ML log-likelihoods).
.pylmer_pb_chunk <- function(small, large, Y) {
  Y <- as.matrix(Y)
  k <- ncol(Y)
  out <- rep(NA_real_, k)
  err <- rep(NA_character_, k)
  cond <- rep(NA_character_, k)
  for (i in seq_len(k)) {
    r <- .pylmer_par_try({
      y <- Y[, i]
      sm2 <- lme4::refit(small, .pylmer_par_resp(small, y))
      lg2 <- lme4::refit(large, .pylmer_par_resp(large, y))
      2 * (as.numeric(stats::logLik(lg2, REML = FALSE)) -
             as.numeric(stats::logLik(sm2, REML = FALSE)))
    })
    if (!is.null(r$value)) out[i] <- r$value
    err[i] <- r$error
    if (length(r$conditions)) cond[i] <- paste(r$conditions, collapse = "; ")
  }
  list(t = out, error = err, conditions = cond)
}

# ------------------------------------------------------------------ many responses

# The template model of lmer_many: `formula` (response `.pylmer_y`) fitted once on the
# data bound as `name`; the other responses are refitted from it (lme4's refit, which
# starts the optimizer at the template's theta).
.pylmer_many_template <- function(name, formula, REML = TRUE, control = NULL,
                                  family = NULL, link = NULL) {
  data <- get(name, envir = .pylmer_store)
  f <- if (is.null(family)) .pylmer_lmer_formula(formula, data) else stats::as.formula(formula)
  env <- new.env(parent = globalenv())
  env$data <- data
  environment(f) <- env
  call <- if (is.null(family)) {
    bquote(lme4::lmer(.(f), data = data, REML = .(REML),
                      control = .(.pylmer_lmer_control(control)), na.action = stats::na.omit))
  } else {
    # a GLMM (glmer.R's call: the family as a call, glmer.nb for the negative binomial)
    .pylmer_glmer_call(f, family, link, 1L, control, NULL, NULL, "omit")
  }
  vars <- intersect(all.vars(f), names(data))
  suppressMessages(suppressWarnings(
    tryCatch(eval(call, env), error = function(e) .pylmer_lmer_explain(e, f, data, vars))
  ))
}

.pylmer_many_status <- function(m) {
  conv <- m@optinfo$conv
  opt_warnings <- as.character(unlist(m@optinfo$warnings))
  failed <- !is.null(conv$lme4$code) && any(conv$lme4$code != 0)
  list(converged = conv$opt == 0 && !failed && length(opt_warnings) == 0L,
       messages = c(as.character(unlist(conv$lme4$messages)), opt_warnings))
}

# VarCorr of a fitted LMM as as.data.frame(VarCorr(m)) lays it out (per term: variances,
# then covariances in lower-triangle column order; the residual last), from theta and
# sigma directly: `variance` (vcov) and `sd_or_cor` (sdcor) columns only.
.pylmer_many_vc_layout <- function(m) {
  vc <- as.data.frame(lme4::VarCorr(m))
  list(group = vc$grp, var1 = vc$var1, var2 = vc$var2)
}

.pylmer_many_vc_values <- function(m) {
  s <- stats::sigma(m)
  theta <- m@theta
  nc <- lengths(m@cnms)
  vcov <- sdcor <- numeric()
  pos <- 0L
  for (k in nc) {
    L <- matrix(0, k, k)
    L[lower.tri(L, diag = TRUE)] <- theta[pos + seq_len(k * (k + 1L) / 2L)]
    pos <- pos + k * (k + 1L) / 2L
    S <- s^2 * tcrossprod(L)
    sd <- sqrt(diag(S))
    low <- lower.tri(S)
    vcov <- c(vcov, diag(S), S[low])
    sdcor <- c(sdcor, sd, (S / outer(sd, sd))[low])
  }
  list(variance = c(vcov, s^2), sd_or_cor = c(sdcor, s))
}

# Fit the template's right-hand side to each column of Y (one value per row of the
# template's data): refit() when the response is complete on the template's rows, a
# fresh lmer() on the complete rows otherwise.  Satterthwaite df / p-values when
# `satterthwaite`.  Returns three data frames: fixef, varcorr, fit.
.pylmer_many_chunk <- function(template, Y, responses, satterthwaite = TRUE) {
  Y <- as.matrix(Y)
  env <- environment(stats::formula(template))
  data <- env$data
  call <- stats::getCall(template)
  control <- .pylmer_par_control(template)
  used <- as.integer(rownames(template@frame))
  terms <- names(lme4::fixef(template))
  layout <- .pylmer_many_vc_layout(template)
  p <- length(terms)
  q <- length(layout$group)
  k <- ncol(Y)
  est <- se <- dfs <- pv <- matrix(NA_real_, p, k)
  vc_var <- vc_sd <- matrix(NA_real_, q, k)
  ok <- logical(k)
  nobs <- rep(NA_integer_, k)
  loglik <- remlcrit <- sigma <- rep(NA_real_, k)
  singular <- rep(NA, k)
  converged <- logical(k)
  method <- rep(NA_character_, k)
  messages <- error <- rep(NA_character_, k)
  glmm <- lme4::isGLMM(template)
  if (glmm) satterthwaite <- FALSE  # Wald z tests instead
  for (j in seq_len(k)) {
    y <- as.numeric(Y[, j])
    r <- .pylmer_par_try({
      yu <- y[used]
      obs <- y[!is.na(y)]
      if (!length(obs)) stop("all values of the response are missing")
      if (any(!is.finite(obs))) stop("the response holds infinite values")
      method[j] <- if (!anyNA(yu)) "refit" else if (glmm) "glmer" else "lmer"
      yu <- yu[!is.na(yu)]
      if (length(yu) && all(yu == yu[1L])) {
        stop("the response is constant (every used value is ", format(yu[1L]), ")")
      }
      if (method[j] == "refit") {
        model <- lme4::refit(template, yu, control = control)
      } else {
        fenv <- new.env(parent = globalenv())
        fenv$data <- data
        fenv$data$.pylmer_y <- y
        model <- eval(call, fenv)
      }
      sat <- NULL
      if (satterthwaite) {
        # pylmer's Satterthwaite computation (satterthwaite.R, equal to lmerTest's), from
        # the fitted model itself: lmerTest would rebuild the deviance function from the
        # call, i.e. from the template's response after refit()
        sat <- .pylmer_lmer_satterthwaite_table(model)
        for (note in sat$notes) warning(note, call. = FALSE)
      }
      list(model = model, sat = sat$table)
    })
    if (length(r$conditions)) messages[j] <- paste(r$conditions, collapse = "; ")
    if (is.null(r$value)) {
      error[j] <- r$error
      next
    }
    model <- r$value$model
    ok[j] <- TRUE
    beta <- lme4::fixef(model)
    s <- stats::sigma(model)
    est[, j] <- beta
    if (glmm) {
      se[, j] <- sqrt(diag(as.matrix(stats::vcov(model))))
      pv[, j] <- 2 * stats::pnorm(abs(beta / se[, j]), lower.tail = FALSE)  # Wald z
      vc <- as.data.frame(lme4::VarCorr(model))
      vc <- list(variance = vc$vcov, sd_or_cor = vc$sdcor)
    } else {
      se[, j] <- s * sqrt(diag(model@pp$unsc()))  # vcov.merMod's diagonal
      vc <- .pylmer_many_vc_values(model)
    }
    if (!is.null(r$value$sat)) {
      dfs[, j] <- r$value$sat$df
      pv[, j] <- r$value$sat$p_value
    }
    vc_var[, j] <- vc$variance
    vc_sd[, j] <- vc$sd_or_cor
    st <- .pylmer_many_status(model)
    msgs <- unique(c(st$messages, r$conditions))
    messages[j] <- if (length(msgs)) paste(msgs, collapse = "; ") else NA_character_
    nobs[j] <- as.integer(stats::nobs(model))
    loglik[j] <- as.numeric(stats::logLik(model))
    remlcrit[j] <- if (lme4::isREML(model)) lme4::REMLcrit(model) else NA_real_
    sigma[j] <- s
    singular[j] <- lme4::isSingular(model)
    converged[j] <- st$converged
  }
  good <- which(ok)
  fixef <- data.frame(response = rep(responses[good], each = p), term = rep(terms, length(good)),
                      estimate = c(est[, good]), std_error = c(se[, good]),
                      t_value = c(est[, good] / se[, good]), df = c(dfs[, good]),
                      p_value = c(pv[, good]), stringsAsFactors = FALSE)
  varcorr <- data.frame(response = rep(responses[good], each = q),
                        group = rep(layout$group, length(good)),
                        var1 = rep(layout$var1, length(good)),
                        var2 = rep(layout$var2, length(good)),
                        variance = c(vc_var[, good]), sd_or_cor = c(vc_sd[, good]),
                        stringsAsFactors = FALSE)
  fit <- data.frame(response = responses, nobs = nobs, loglik = loglik,
                    reml_criterion = remlcrit, sigma = sigma, singular = singular,
                    converged = converged, method = method, messages = messages,
                    error = error, stringsAsFactors = FALSE)
  list(fixef = fixef, varcorr = varcorr, fit = fit)
}
