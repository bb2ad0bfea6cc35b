# R side of pylmer.glmmtmb: fit a model with glmmTMB (zero inflation, dispersion models,
# beta, tweedie, truncated and negative binomial families) and extract everything
# GlmmTMBModel exposes in ONE call; then the on-request helpers (predict, simulate,
# refit, anova, confint, emmeans, script writer).  Sourced by pylmer.r.session after
# bridge.R; reuses lmer.R's and glmer.R's helpers.

# family -> the function that builds it (glmmTMB's own families or stats').
.pylmer_tmb_family_fun <- function(family) {
  switch(family,
    gaussian = quote(stats::gaussian), poisson = quote(stats::poisson),
    binomial = quote(stats::binomial), Gamma = quote(stats::Gamma),
    nbinom1 = quote(glmmTMB::nbinom1), nbinom2 = quote(glmmTMB::nbinom2),
    beta = quote(glmmTMB::beta_family), betabinomial = quote(glmmTMB::betabinomial),
    tweedie = quote(glmmTMB::tweedie), truncated_poisson = quote(glmmTMB::truncated_poisson),
    truncated_nbinom2 = quote(glmmTMB::truncated_nbinom2),
    truncated_nbinom1 = quote(glmmTMB::truncated_nbinom1), genpois = quote(glmmTMB::genpois),
    .pylmer_stop("argument", "unknown family '", family, "'")
  )
}

.pylmer_tmb_family_call <- function(family, link) {
  as.call(list(.pylmer_tmb_family_fun(family), link = link))
}

# The response checked against the family; messages name the response.
.pylmer_tmb_check_response <- function(f, data, family) {
  lhs <- f[[2L]]
  label <- paste(deparse(lhs), collapse = " ")
  y <- tryCatch(eval(lhs, data, baseenv()), error = function(e) NULL)
  if (is.null(y)) return(invisible())
  if (family %in% c("binomial", "betabinomial")) {
    return(.pylmer_glmer_check_response(y, label, "binomial"))
  }
  if (!is.numeric(y) || is.matrix(y)) {
    .pylmer_stop("data", "the ", family, " response '", label, "' must be one numeric ",
                 "column, not ", class(y)[1L])
  }
  ok <- switch(family,
    gaussian = function(v) rep(TRUE, length(v)),
    beta = function(v) v > 0 & v < 1,
    Gamma = function(v) v > 0,
    tweedie = function(v) v >= 0,
    function(v) v >= 0 & abs(v - round(v)) < 1e-8  # counts
  )
  rule <- switch(family, beta = "values strictly between 0 and 1", Gamma = "positive values",
                 tweedie = "non-negative values", "non-negative whole counts")
  bad <- !is.na(y) & !ok(y)
  if (any(bad)) {
    .pylmer_stop("data", "the ", family, " response '", label, "' needs ", rule, "; it has ",
                 .pylmer_glmer_describe(y, bad))
  }
  invisible()
}

.pylmer_tmb_formula <- function(formula, data, what) {
  f <- tryCatch(stats::as.formula(formula), error = function(e) {
    .pylmer_stop("formula", "cannot parse ", what, " '", formula, "': ", conditionMessage(e))
  })
  vars <- all.vars(f)
  missing <- vars[!vars %in% names(data) & !vapply(vars, exists, TRUE, envir = baseenv())]
  if (length(missing)) {
    .pylmer_stop("formula", what, " '", formula, "' names column(s) not in the data: ",
                 .pylmer_quote(missing))
  }
  f
}

# glmmTMBControl arguments (optimizer by name, optCtrl, profile, ...).
.pylmer_tmb_control <- function(control) {
  if (is.null(control)) return(quote(glmmTMB::glmmTMBControl()))
  args <- control[!vapply(control, is.null, TRUE)]
  unknown <- setdiff(names(args), names(formals(glmmTMB::glmmTMBControl)))
  if (length(unknown)) {
    .pylmer_stop("argument", "glmmTMBControl of glmmTMB ",
                 as.character(utils::packageVersion("glmmTMB")), " has no option ",
                 .pylmer_quote(unknown), " (given in control)")
  }
  if (!is.null(args$optimizer)) args$optimizer <- as.name(args$optimizer)
  if (!is.null(args$optCtrl)) args$optCtrl <- as.list(args$optCtrl)
  as.call(c(list(quote(glmmTMB::glmmTMBControl)), args))
}

.pylmer_tmb_call <- function(f, family, link, zi, disp, weights, offset, control, na_action,
                             REML = FALSE) {
  na <- if (identical(na_action, "error")) quote(stats::na.fail) else quote(stats::na.omit)
  call <- bquote(glmmTMB::glmmTMB(.(f), data = data,
                                  family = .(.pylmer_tmb_family_call(family, link)),
                                  na.action = .(na)))
  if (!is.null(zi)) call$ziformula <- zi
  if (!is.null(disp)) call$dispformula <- disp
  if (!is.null(weights)) call$weights <- if (is.character(weights)) as.name(weights) else quote(w)
  if (!is.null(offset)) call$offset <- if (is.character(offset)) as.name(offset) else quote(o)
  if (!is.null(control)) call$control <- .pylmer_tmb_control(control)
  if (isTRUE(REML)) call$REML <- TRUE
  call
}

# Readable names of glmmTMB's parameter vector (beta, betazi, betad, theta, thetazi, psi).
.pylmer_tmb_par_names <- function(m) {
  par <- m$fit$par
  kinds <- names(par)
  out <- character(length(par))
  X <- list(beta = colnames(glmmTMB::getME(m, "X")), betazi = colnames(glmmTMB::getME(m, "Xzi")),
            betad = colnames(m$obj$env$data$Xd))
  prefix <- c(beta = "cond", betazi = "zi", betad = "disp")
  for (k in names(prefix)) {
    at <- which(kinds == k)
    if (length(at)) out[at] <- paste0(prefix[[k]], " ", X[[k]][seq_along(at)])
  }
  for (k in c("theta", "thetazi")) {
    at <- which(kinds == k)
    if (!length(at)) next
    re <- m$modelInfo$reStruc[[if (k == "theta") "condReStruc" else "ziReStruc"]]
    labels <- unlist(lapply(names(re), function(term) {
      s <- re[[term]]
      c(paste0("log-sd ", seq_len(s$blockSize), " of (", term, ")"),
        rep(paste0("correlation of (", term, ")"), s$blockNumTheta - s$blockSize))
    }))
    comp <- if (k == "theta") "cond" else "zi"
    out[at] <- paste0(comp, " random effects: ", labels[seq_along(at)])
  }
  out[kinds == "psi"] <- paste0("family parameter psi (", m$modelInfo$family$family, ")")
  out[!nzchar(out)] <- kinds[!nzchar(out)]
  out
}

# The parameters a non-positive-definite Hessian points at: those with the largest weights
# in the eigenvectors of the (numerical) Hessian's non-positive or tiny eigenvalues, or with
# a non-finite standard error.
.pylmer_tmb_hessian_culprits <- function(m) {
  names_ <- .pylmer_tmb_par_names(m)
  h <- tryCatch(stats::optimHess(m$fit$par, m$obj$fn, m$obj$gr), error = function(e) NULL)
  if (!is.null(h) && all(is.finite(h))) {
    e <- eigen(h, symmetric = TRUE)
    small <- which(e$values <= 1e-6 * max(abs(e$values)))
    if (length(small)) {
      v <- abs(e$vectors[, small, drop = FALSE])
      w <- apply(v, 1L, max)
      return(names_[w >= 0.3 * max(w)])
    }
  }
  se <- suppressWarnings(sqrt(diag(m$sdr$cov.fixed)))
  names_[!is.finite(se)]
}

.pylmer_tmb_check_convergence <- function(m) {
  msgs <- character()
  if (!is.null(m$sdr) && !isTRUE(m$sdr$pdHess)) {
    culprits <- .pylmer_tmb_hessian_culprits(m)
    msgs <- c(msgs, paste0(
      "glmmTMB: model convergence problem: non-positive-definite Hessian matrix; the ",
      "parameter(s) at fault: ", paste0("'", culprits, "'", collapse = ", "),
      " (not identified by the data: e.g. a level with only zeros, a zero variance, or ",
      "collinear terms); their standard errors are NaN"
    ))
  }
  if (!is.null(m$fit$convergence) && m$fit$convergence != 0) {
    msgs <- c(msgs, paste0("glmmTMB: the optimizer did not converge: ", m$fit$message))
  }
  msgs
}

.pylmer_tmb_fit <- function(name, formula, family = "gaussian", link = "identity",
                            ziformula = NULL, dispformula = NULL, weights = NULL,
                            offset = NULL, control = NULL, na_action = "omit", REML = FALSE) {
  if (!requireNamespace("glmmTMB", quietly = TRUE)) {
    .pylmer_stop("argument", "the R package glmmTMB is not installed (Debian: ",
                 "r-cran-glmmtmb; conda: r-glmmtmb)")
  }
  data <- get(name, envir = .pylmer_store)
  f <- .pylmer_tmb_formula(formula, data, "the formula")
  if (length(f) != 3L) .pylmer_stop("formula", "the formula '", formula, "' has no response")
  zi <- if (!is.null(ziformula)) .pylmer_tmb_formula(ziformula, data, "ziformula")
  disp <- if (!is.null(dispformula)) .pylmer_tmb_formula(dispformula, data, "dispformula")
  for (arg in list(list("weights", weights), list("offset", offset))) {
    if (is.character(arg[[2L]]) && !arg[[2L]] %in% names(data)) {
      .pylmer_stop("data", "the ", arg[[1L]], " column '", arg[[2L]], "' is not in the data")
    }
  }
  if (is.character(weights)) {
    bad <- !is.na(data[[weights]]) & data[[weights]] < 0
    if (any(bad)) {
      .pylmer_stop("data", "the weights column '", weights, "' has negative values: ",
                   .pylmer_glmer_describe(data[[weights]], bad))
    }
  }
  .pylmer_tmb_check_response(f, data, family)
  env <- new.env(parent = globalenv())
  env$data <- data
  for (k in c("f", "zi", "disp")) {
    g <- get(k)
    if (!is.null(g)) {
      environment(g) <- env
      assign(k, g)
    }
  }
  if (is.numeric(weights)) env$w <- as.numeric(weights)
  if (is.numeric(offset)) env$o <- as.numeric(offset)
  call <- .pylmer_tmb_call(f, family, link, zi, disp, weights, offset, control, na_action,
                           REML)
  vars <- intersect(unique(c(all.vars(f), all.vars(zi), all.vars(disp),
                             if (is.character(weights)) weights,
                             if (is.character(offset)) offset)), names(data))
  model <- withCallingHandlers(
    tryCatch(eval(call, env), error = function(e) .pylmer_lmer_explain(e, f, data, vars)),
    warning = function(w) {
      # replaced by .pylmer_tmb_check_convergence's message, which names the parameters
      if (grepl("Model convergence problem", conditionMessage(w), fixed = TRUE)) {
        invokeRestart("muffleWarning")
      }
    }
  )
  attr(model, "pylmer_env") <- env
  problems <- .pylmer_tmb_check_convergence(model)
  for (p in problems) warning(p, call. = FALSE)
  n_na <- vapply(vars, function(v) sum(is.na(data[[v]])), 0L)
  out <- c(list(model = model, na_counts = n_na[n_na > 0L]), .pylmer_tmb_extract(model))
  out$messages <- c(out$messages, problems)
  out$converged <- out$converged && !length(problems)
  out
}

.pylmer_tmb_coef_table <- function(tab) {
  if (is.null(tab) || !length(tab)) return(NULL)
  data.frame(estimate = tab[, 1L], std_error = tab[, 2L], z_value = tab[, 3L],
             p_value = tab[, 4L], row.names = rownames(tab))
}

# VarCorr as rows: component, group, var1, var2, variance (NA for correlations), sd_or_cor.
.pylmer_tmb_varcorr <- function(m) {
  vc <- glmmTMB::VarCorr(m)
  rows <- list()
  for (comp in c("cond", "zi")) {
    for (g in names(vc[[comp]])) {
      v <- vc[[comp]][[g]]
      sd <- attr(v, "stddev")
      cor <- attr(v, "correlation")
      terms <- names(sd)
      rows[[length(rows) + 1L]] <- data.frame(
        component = comp, group = g, var1 = terms, var2 = NA_character_,
        variance = unname(sd^2), sd_or_cor = unname(sd), stringsAsFactors = FALSE
      )
      if (length(terms) > 1L) {
        ij <- which(upper.tri(cor), arr.ind = TRUE)
        ij <- ij[order(ij[, 1L], ij[, 2L]), , drop = FALSE]
        rows[[length(rows) + 1L]] <- data.frame(
          component = comp, group = g, var1 = terms[ij[, 1L]], var2 = terms[ij[, 2L]],
          variance = NA_real_, sd_or_cor = cor[ij], stringsAsFactors = FALSE
        )
      }
    }
  }
  if (!length(rows)) {
    return(data.frame(component = character(), group = character(), var1 = character(),
                      var2 = character(), variance = numeric(), sd_or_cor = numeric()))
  }
  out <- do.call(rbind, rows)
  rownames(out) <- NULL
  out
}

.pylmer_tmb_ranef <- function(m) {
  re <- glmmTMB::ranef(m, condVar = TRUE)
  one <- function(comp) {
    lst <- re[[comp]]
    modes <- lapply(lst, function(r) {
      attr(r, "condVar") <- NULL
      as.data.frame(r, optional = TRUE)
    })
    sds <- lapply(lst, function(r) {
      cv <- attr(r, "condVar")
      blocks <- if (is.list(cv)) cv else list(cv)
      cols <- unlist(lapply(blocks, function(a) {
        lapply(seq_len(dim(a)[1L]), function(k) sqrt(a[k, k, ]))
      }), recursive = FALSE)
      out <- as.data.frame(cols, col.names = names(r), optional = TRUE)
      rownames(out) <- rownames(r)
      out
    })
    list(modes = modes, sds = sds)
  }
  list(cond = one("cond"), zi = one("zi"))
}

# The conditional covariances of the conditional model's random effects, per grouping
# factor a K x K x levels array (glmmTMB's condVar; with several terms on one factor,
# its blocks on the diagonal and NA between terms; glmmTMB gives NA off the diagonal).
.pylmer_tmb_condvar <- function(m) {
  re <- glmmTMB::ranef(m, condVar = TRUE)$cond
  lapply(re, function(r) {
    cv <- attr(r, "condVar")
    blocks <- if (is.list(cv)) cv else list(cv)
    k <- ncol(r)
    out <- array(NA_real_, c(k, k, nrow(r)))
    at <- 0L
    for (a in blocks) {
      idx <- at + seq_len(dim(a)[1L])
      out[idx, idx, ] <- a
      at <- at + dim(a)[1L]
    }
    as.numeric(out)
  })
}

.pylmer_tmb_extract <- function(m) {
  s <- summary(m)
  co <- s$coefficients
  ll <- stats::logLik(m)
  fam <- stats::family(m)
  re <- .pylmer_tmb_ranef(m)
  ngrps <- unlist(lapply(m$modelInfo$reTrms$cond$flist, nlevels))
  rows <- as.integer(rownames(m$frame))
  V <- stats::vcov(m)$cond
  has_disp <- !is.null(co$disp) && nrow(co$disp) > 0L &&
    !identical(deparse(m$modelInfo$allForm$dispformula), "~1")
  list(
    fixef = .pylmer_tmb_coef_table(co$cond),
    fixef_zi = .pylmer_tmb_coef_table(co$zi),
    fixef_disp = if (has_disp) .pylmer_tmb_coef_table(co$disp),
    ranef = re$cond$modes,
    ranef_sd = re$cond$sds,
    ranef_zi = re$zi$modes,
    ranef_zi_sd = re$zi$sds,
    varcorr = .pylmer_tmb_varcorr(m),
    sigma = stats::sigma(m),
    family_param = if (fam$family == "tweedie") glmmTMB::family_params(m) else NULL,
    loglik = as.numeric(ll),
    df = as.integer(attr(ll, "df")),
    aic = stats::AIC(m),
    bic = stats::BIC(m),
    deviance = -2 * as.numeric(ll),
    df_residual = as.integer(stats::df.residual(m)),
    nobs = as.integer(stats::nobs(m)),
    ngrps = if (length(ngrps)) ngrps else NULL,
    vcov = as.matrix(V),
    fitted = unname(stats::fitted(m)),
    residuals = unname(stats::residuals(m, type = "response")),
    rows = rows,
    converged = isTRUE(m$fit$convergence == 0) && isTRUE(m$sdr$pdHess),
    pd_hess = isTRUE(m$sdr$pdHess),
    messages = character(),
    family = fam$family,
    link = fam$link,
    optimizer_message = m$fit$message,
    response = paste(deparse(stats::formula(m)[[2L]]), collapse = " ")
  )
}

# ------------------------------------------------------------------ on request

.pylmer_tmb_predict <- function(m, name = NULL, type = "response", include_random = TRUE,
                                allow_new_levels = TRUE) {
  re_form <- if (include_random) NULL else NA
  if (is.null(name)) {
    return(unname(as.numeric(stats::predict(m, type = type, re.form = re_form))))
  }
  newdata <- get(name, envir = .pylmer_store)
  if (nrow(newdata) == 0L) return(numeric())
  unname(as.numeric(stats::predict(m, newdata = newdata, type = type, re.form = re_form,
                                   allow.new.levels = allow_new_levels)))
}

# Simulated responses as plain numbers (successes for a cbind() response).
.pylmer_tmb_simulate <- function(m, nsim = 1L, seed = NULL) {
  sims <- stats::simulate(m, nsim = nsim, seed = seed)
  out <- lapply(seq_along(sims), function(i) {
    s <- sims[[i]]
    if (is.matrix(s)) s[, 1L] else if (is.factor(s)) as.numeric(s != levels(s)[1L]) else s
  })
  out <- as.data.frame(out, optional = TRUE)
  names(out) <- paste0("sim_", seq_along(sims))
  out
}

# Refit to a new response: the used rows of the data with the response replaced by
# `.pylmer_y` (or cbind(.pylmer_y1, .pylmer_y2) for a two-column binomial response), so
# every response form (a column, an expression, cbind(s, n - s)) takes what simulate gives.
.pylmer_tmb_refit_model <- function(m, newresp) {
  if (is.data.frame(newresp)) newresp <- as.matrix(newresp)
  if (NROW(newresp) != stats::nobs(m)) {
    .pylmer_stop("data", "newresp has ", NROW(newresp), " values; the model has ",
                 stats::nobs(m), " observations")
  }
  env <- attr(m, "pylmer_env")
  rows <- as.integer(rownames(m$frame))
  call <- m$call
  f <- call[[2L]]
  y <- stats::model.response(m$frame)
  data <- env$data[rows, , drop = FALSE]
  if (is.matrix(y)) {
    if (is.null(dim(newresp))) newresp <- cbind(newresp, rowSums(y) - newresp)
    data$.pylmer_y1 <- newresp[, 1L]
    data$.pylmer_y2 <- newresp[, 2L]
    f[[2L]] <- quote(cbind(.pylmer_y1, .pylmer_y2))
  } else {
    data$.pylmer_y <- as.numeric(newresp)
    f[[2L]] <- quote(.pylmer_y)
  }
  new <- new.env(parent = globalenv())
  new$data <- data
  if (!is.null(env$w)) new$w <- env$w[rows]
  if (!is.null(env$o)) new$o <- env$o[rows]
  f <- stats::as.formula(f, env = new)
  environment(f) <- new
  call[[2L]] <- f
  model <- withCallingHandlers(eval(call, new), warning = function(w) {
    if (grepl("Model convergence problem", conditionMessage(w), fixed = TRUE)) {
      invokeRestart("muffleWarning")
    }
  })
  attr(model, "pylmer_env") <- new
  model
}

.pylmer_tmb_refit <- function(m, newresp) {
  model <- .pylmer_tmb_refit_model(m, newresp)
  problems <- .pylmer_tmb_check_convergence(model)
  for (p in problems) warning(p, call. = FALSE)
  out <- c(list(model = model), .pylmer_tmb_extract(model))
  out$messages <- problems
  out$converged <- out$converged && !length(problems)
  out
}

.pylmer_tmb_anova <- function(models, labels) {
  env <- list2env(stats::setNames(models, labels), parent = environment())
  call <- as.call(c(list(quote(stats::anova)), lapply(labels, as.name)))
  as.data.frame(eval(call, env))
}

.pylmer_tmb_confint <- function(m, level = 0.95, component = "all") {
  ci <- stats::confint(m, method = "wald", level = level, component = component)
  as.matrix(ci[, 1:3, drop = FALSE])
}

.pylmer_tmb_emmeans <- function(m, specs, type = "link", level = 0.95) {
  em <- emmeans::emmeans(m, specs = specs, type = type, level = level, component = "cond")
  as.data.frame(summary(em))
}

.pylmer_tmb_write_script <- function(name, dir, stem, formula, family = "gaussian",
                                     link = "identity", ziformula = NULL,
                                     dispformula = NULL, weights = NULL, offset = NULL,
                                     control = NULL, REML = FALSE) {
  data <- get(name, envir = .pylmer_store)
  f <- stats::as.formula(formula)
  zi <- if (!is.null(ziformula)) stats::as.formula(ziformula)
  disp <- if (!is.null(dispformula)) stats::as.formula(dispformula)
  call <- .pylmer_tmb_call(f, family, link, zi, disp, weights, offset, control, "omit", REML)
  call$na.action <- NULL
  call[[1L]] <- as.name("glmmTMB")
  values <- c(
    if (is.numeric(weights)) sprintf("w <- c(%s)", paste(sprintf("%.17g", weights), collapse = ", ")),
    if (is.numeric(offset)) sprintf("o <- c(%s)", paste(sprintf("%.17g", offset), collapse = ", "))
  )
  lines <- c(
    sub("library(lme4)", "library(glmmTMB)", .pylmer_script_data(data, dir, stem),
        fixed = TRUE),
    values,
    paste0("m <- ", paste(deparse(call, width.cutoff = 500L), collapse = " ")),
    "print(summary(m))"
  )
  lines[1L] <- "# Written by pylmer: refits the model in plain R with glmmTMB."
  path <- file.path(dir, paste0(stem, ".R"))
  writeLines(lines, path)
  path
}

# ------------------------------------------------------------------ bootstrap (parallel.R)

# The bootstrap statistic of a glmmTMB fit: the fixed effects of the conditional model
# (their names), the zero-inflation and dispersion models ("zi~name", "disp~name"), and
# the random effects' standard deviations ("sd_<term>|<group>", "zi~sd_...").
.pylmer_tmb_boot_stat <- function(m) {
  fe <- glmmTMB::fixef(m)
  out <- fe$cond
  if (length(fe$zi)) out <- c(out, stats::setNames(fe$zi, paste0("zi~", names(fe$zi))))
  disp <- m$modelInfo$allForm$dispformula
  if (length(fe$disp) && !identical(deparse(disp), "~1")) {
    out <- c(out, stats::setNames(fe$disp, paste0("disp~", names(fe$disp))))
  }
  vc <- glmmTMB::VarCorr(m)
  for (comp in c("cond", "zi")) {
    for (g in names(vc[[comp]])) {
      sd <- attr(vc[[comp]][[g]], "stddev")
      names(sd) <- paste0(if (comp == "zi") "zi~", "sd_", names(sd), "|", g)
      out <- c(out, sd)
    }
  }
  out
}

# Draws as glmmTMB's simulate() gives them after set.seed(seed) (new random effects, as
# bootMer's use.u = FALSE), one column per draw, and the statistic of the fit.
.pylmer_tmb_boot_setup <- function(m, nsim, seed = NULL) {
  if (!is.null(seed)) set.seed(seed)
  list(Y = .pylmer_par_draws(stats::simulate(m, nsim = nsim)), t0 = .pylmer_tmb_boot_stat(m))
}

.pylmer_tmb_boot_chunk <- function(m, Y) {
  Y <- as.matrix(Y)
  t0 <- .pylmer_tmb_boot_stat(m)
  k <- ncol(Y)
  out <- matrix(NA_real_, k, length(t0), dimnames = list(NULL, names(t0)))
  err <- cond <- rep(NA_character_, k)
  for (i in seq_len(k)) {
    r <- .pylmer_par_try({
      fit <- .pylmer_tmb_refit_model(m, Y[, i])
      for (p in .pylmer_tmb_check_convergence(fit)) warning(p, call. = FALSE)
      .pylmer_tmb_boot_stat(fit)
    })
    if (!is.null(r$value)) out[i, ] <- r$value
    err[i] <- r$error
    if (length(r$conditions)) cond[i] <- paste(r$conditions, collapse = "; ")
  }
  list(t = out, error = err, conditions = cond)
}
