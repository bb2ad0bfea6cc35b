# R side of pylmer.power: power by simulation (as simr's powerSim / powerCurve do it, with
# lme4 only).  The parent process draws every response once with lme4's
# simulate(model, nsim, seed = seed, newparams = ...); workers refit the model to chunks of
# them with lme4's refit() and test one coefficient or term.  A plain-R loop
#   Y <- simulate(m, nsim, seed = seed, newparams = p); for (j) refit(m, Y[[j]]) + test
# gives the same p-values.  Sourced after bridge.R, lmer.R, satterthwaite.R, inference.R and
# parallel.R (it uses .pylmer_par_try, .pylmer_par_resp, .pylmer_inf_lmertest).

# The parameters simulate() draws with: the model's own, beta entries replaced by `beta`
# (a named vector), theta / sigma replaced when given.
.pylmer_power_params <- function(m, beta = NULL, theta = NULL, sigma = NULL) {
  b <- lme4::fixef(m)
  if (length(beta)) {
    bad <- setdiff(names(beta), names(b))
    if (length(bad)) {
      .pylmer_stop("argument", "effect names no fixed effect: ", .pylmer_quote(bad),
                   " (fixed effects: ", .pylmer_quote(names(b)), ")")
    }
    b[names(beta)] <- as.numeric(beta)
  }
  th <- lme4::getME(m, "theta")
  if (length(theta)) {
    if (length(theta) != length(th)) {
      .pylmer_stop("argument", "theta has ", length(theta), " values; the model has ",
                   length(th), " (", .pylmer_quote(names(th)), ")")
    }
    th[] <- as.numeric(theta)
  }
  p <- list(beta = b, theta = th)
  if (lme4::isLMM(m) || lme4::getME(m, "devcomp")$dims[["useSc"]] == 1L) {
    p$sigma <- if (length(sigma)) as.numeric(sigma) else stats::sigma(m)
  } else if (length(sigma)) {
    .pylmer_stop("argument", "sigma is not a parameter of this model (family ",
                 stats::family(m)$family, ")")
  }
  p
}

# One simulated response as a plain numeric vector: successes of a cbind() response,
# 0/1 for a factor response (1 = not the first level).
.pylmer_power_numeric <- function(s) {
  if (is.matrix(s)) s[, 1L] else if (is.factor(s)) as.numeric(s != levels(s)[1L]) else s
}

# The responses: simulate(m, nsim, seed = seed, newparams = params), one column per draw.
.pylmer_power_simulate <- function(m, nsim, seed = NULL, beta = NULL, theta = NULL,
                                   sigma = NULL) {
  params <- .pylmer_power_params(m, beta, theta, sigma)
  if (is.null(seed) && !exists(".Random.seed", envir = globalenv())) stats::runif(1)
  ss <- stats::simulate(m, nsim = nsim, seed = seed, newparams = params)
  Y <- vapply(ss, .pylmer_power_numeric, numeric(stats::nobs(m)))
  Y <- matrix(Y, nrow = stats::nobs(m))
  dimnames(Y) <- NULL
  list(Y = Y, beta = params$beta, theta = params$theta,
       sigma = if (is.null(params$sigma)) NA_real_ else params$sigma)
}

# The response refit() takes for column y: a two-column matrix for a cbind() response.
.pylmer_power_resp <- function(m, y) {
  r <- stats::model.response(stats::model.frame(m))
  if (is.matrix(r)) y <- cbind(y, rowSums(r) - y)
  .pylmer_par_resp(m, y)
}

# What a test needs: its kind ("coef" or "term"), and for the likelihood-ratio test the
# full and reduced models fitted by ML (the full one as update(m, REML = FALSE) would).
.pylmer_power_prepare <- function(m, test, method) {
  coefs <- names(lme4::fixef(m))
  labels <- attr(stats::terms(lme4::nobars(stats::formula(m))), "term.labels")
  kind <- if (test %in% coefs) "coef" else if (test %in% labels) "term" else {
    .pylmer_stop("argument", "test names neither a fixed effect nor a term: '", test,
                 "' (fixed effects: ", .pylmer_quote(coefs), "; terms: ",
                 .pylmer_quote(labels), ")")
  }
  out <- list(kind = kind, df = NA_integer_)
  if (method == "lrt") {
    if (!test %in% labels) {
      .pylmer_stop("argument", "the likelihood-ratio test drops a term; '", test,
                   "' is a coefficient, not a term (terms: ", .pylmer_quote(labels), ")")
    }
    full <- if (lme4::isLMM(m) && lme4::isREML(m)) .pylmer_power_update(m, REML = FALSE) else m
    reduced <- .pylmer_power_update(full, drop = test)
    out$full <- full
    out$reduced <- reduced
    out$df <- length(lme4::fixef(full)) - length(lme4::fixef(reduced))
  }
  out
}

# update() of a pylmer fit, evaluated where its call's names (data, weights) live.
.pylmer_power_update <- function(m, drop = NULL, REML = NULL, data = NULL) {
  env <- environment(stats::formula(m))
  args <- list(m, evaluate = FALSE)
  if (!is.null(drop)) {
    args$formula. <- stats::as.formula(paste(". ~ . -", drop), env = env)
  }
  if (!is.null(REML)) args$REML <- REML
  call <- do.call(stats::update, args)
  if (!is.null(data)) {
    # a new environment holding the new data (and the weights' names), which the refitted
    # model's formula keeps: later update()s of it see these data
    env <- new.env(parent = env)
    env$data <- data
    f <- stats::formula(m)
    environment(f) <- env
    call$formula <- f
  }
  suppressMessages(eval(call, env))
}

# The p-value of the test on a refitted model (lmer: lmerTest's Satterthwaite or
# Kenward-Roger tests, from pylmer's own Satterthwaite quantities; glmer: lme4's Wald z,
# or a Wald chi-square for a term of several columns).
.pylmer_power_pvalue <- function(fit, test, kind, method) {
  if (method == "satterthwaite" && kind == "coef") {
    sat <- .pylmer_lmer_satterthwaite_table(fit)
    for (note in sat$notes) warning(note, call. = FALSE)
    return(sat$table[test, "p_value"])
  }
  if (method %in% c("satterthwaite", "kenward-roger")) {
    mt <- .pylmer_inf_lmertest(fit)
    ddf <- .pylmer_inf_ddf(method)
    if (kind == "coef") {
      return(unname(stats::coef(summary(mt, ddf = ddf))[test, "Pr(>|t|)"]))
    }
    return(stats::anova(mt, type = 3L, ddf = ddf)[test, "Pr(>F)"])
  }
  # glmer: Wald tests on lme4's vcov
  b <- lme4::fixef(fit)
  V <- as.matrix(stats::vcov(fit))
  cols <- if (kind == "coef") test else {
    names(b)[attr(lme4::getME(fit, "X"), "assign") ==
               match(test, attr(stats::terms(lme4::nobars(stats::formula(fit))), "term.labels"))]
  }
  if (length(cols) == 1L) {
    return(2 * stats::pnorm(abs(b[[cols]]) / sqrt(V[cols, cols]), lower.tail = FALSE))
  }
  w <- drop(crossprod(b[cols], solve(V[cols, cols], b[cols])))
  stats::pchisq(w, length(cols), lower.tail = FALSE)
}

# Refit to each column of Y and test; p-values (NA when the refit or test failed), whether
# each refit is singular, errors and R's warnings per draw.
.pylmer_power_chunk <- function(m, Y, test, method, prep = NULL) {
  Y <- as.matrix(Y)
  k <- ncol(Y)
  if (is.null(prep)) prep <- .pylmer_power_prepare(m, test, method)
  pv <- rep(NA_real_, k)
  sing <- rep(NA, k)
  err <- cond <- rep(NA_character_, k)
  for (i in seq_len(k)) {
    r <- .pylmer_par_try({
      if (method == "lrt") {
        y <- .pylmer_power_resp(prep$full, Y[, i])
        f1 <- lme4::refit(prep$full, y)
        f0 <- lme4::refit(prep$reduced, y)
        stat <- 2 * (as.numeric(stats::logLik(f1)) - as.numeric(stats::logLik(f0)))
        list(p = stats::pchisq(stat, prep$df, lower.tail = FALSE), singular = lme4::isSingular(f1))
      } else {
        fit <- lme4::refit(m, .pylmer_power_resp(m, Y[, i]))
        list(p = .pylmer_power_pvalue(fit, test, prep$kind, method),
             singular = lme4::isSingular(fit))
      }
    })
    if (!is.null(r$value)) {
      pv[i] <- r$value$p
      sing[i] <- r$value$singular
    }
    err[i] <- r$error
    if (length(r$conditions)) cond[i] <- paste(r$conditions, collapse = "; ")
  }
  list(p = pv, singular = sing, error = err, conditions = cond)
}

# ------------------------------------------------------------------ designs of a power curve

# The model's data with `size` levels of `along` (within = NULL): the first levels in the
# order they appear, or new levels (copies of the existing ones, in turn, labelled
# "<level>.<copy>") beyond them, as simr's extend(along = ) does.  With `within`: `size`
# values of `along` within each level of `within` (the first ones, or new ones continuing a
# numeric `along` with its own step, each a copy of the rows of an existing value).
.pylmer_power_design <- function(m, along, size, within = NULL) {
  data <- environment(stats::formula(m))$data
  if (is.null(within)) {
    return(.pylmer_power_levels(data, along, size))
  }
  parts <- split(seq_len(nrow(data)), data[[within]], drop = TRUE)
  rows <- lapply(parts, function(idx) {
    d <- data[idx, , drop = FALSE]
    .pylmer_power_values(d, along, size)
  })
  out <- do.call(rbind, unname(rows))
  rownames(out) <- NULL
  out
}

.pylmer_power_levels <- function(data, column, size) {
  x <- data[[column]]
  lev <- unique(as.character(x[!is.na(x)]))
  if (size <= length(lev)) {
    out <- data[!is.na(x) & as.character(x) %in% lev[seq_len(size)], , drop = FALSE]
    if (is.factor(out[[column]])) out[[column]] <- droplevels(out[[column]])
    rownames(out) <- NULL
    return(out)
  }
  parts <- list(data[!is.na(x), , drop = FALSE])
  for (j in seq_len(size - length(lev))) {
    src <- lev[(j - 1L) %% length(lev) + 1L]
    d <- data[!is.na(x) & as.character(x) == src, , drop = FALSE]
    copy <- (j - 1L) %/% length(lev) + 1L
    d[[column]] <- paste0(src, ".", copy)
    parts[[j + 1L]] <- d
  }
  out <- do.call(rbind, lapply(parts, function(d) {
    d[[column]] <- as.character(d[[column]])
    d
  }))
  out[[column]] <- factor(out[[column]], levels = unique(out[[column]]))
  rownames(out) <- NULL
  out
}

.pylmer_power_values <- function(d, along, size) {
  x <- d[[along]]
  vals <- if (is.numeric(x)) sort(unique(x[!is.na(x)])) else unique(as.character(x[!is.na(x)]))
  if (size <= length(vals)) {
    return(d[!is.na(x) & x %in% vals[seq_len(size)], , drop = FALSE])
  }
  step <- if (is.numeric(x) && length(vals) > 1L) stats::median(diff(vals)) else 1
  parts <- list(d[!is.na(x), , drop = FALSE])
  for (j in seq_len(size - length(vals))) {
    src <- vals[(j - 1L) %% length(vals) + 1L]
    e <- d[!is.na(x) & x == src, , drop = FALSE]
    e[[along]] <- if (is.numeric(x)) max(vals) + j * step else paste0(src, ".", j)
    parts[[j + 1L]] <- e
  }
  out <- do.call(rbind, parts)
  if (!is.numeric(x)) out[[along]] <- factor(as.character(out[[along]]))
  out
}

# The template of one size: the model refitted (update()) to the design of that size.
.pylmer_power_template <- function(m, along, size, within = NULL) {
  data <- .pylmer_power_design(m, along, size, within)
  list(model = .pylmer_power_update(m, data = data), nobs = stats::nobs(m),
       rows = nrow(data), levels = length(unique(data[[along]])))
}
