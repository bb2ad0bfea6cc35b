# R side of pylmer.glmer: fit a generalized linear mixed model with lme4 (glmer, or
# glmer.nb for the negative binomial) and extract everything GlmerModel exposes in ONE
# call; then the on-request helpers (predict, refit, simulate, script writer).  Sourced by
# pylmer/_r.py after bridge.R into the private environment; reuses lmer.R's helpers
# (formula checks, lme4's errors explained, the accessors common to every merMod).

# ------------------------------------------------------------------ family and response

# The family as a call (stats::binomial(link = "logit")), so that lme4's update(),
# profile() and bootMer() re-evaluate it and a written script reads like R.
.pylmer_glmer_family_call <- function(family, link) {
  fun <- switch(family,
    binomial = quote(stats::binomial),
    poisson = quote(stats::poisson),
    Gamma = quote(stats::Gamma),
    inverse.gaussian = quote(stats::inverse.gaussian),
    .pylmer_stop("argument", "unknown family '", family, "'")
  )
  as.call(list(fun, link = link))
}

# The formula (checked by lmer.R's parser) and the response checked against the family;
# every message names the response column or expression.
.pylmer_glmer_formula <- function(formula, data, family, weights = NULL) {
  f <- tryCatch(
    .pylmer_lmer_formula(formula, data),
    # lmer's parser wants a numeric response; a binomial one may be a two-level factor
    pylmer_data_error = function(e) if (family == "binomial") NULL else stop(e),
    pylmer_formula_error = function(e) {
      .pylmer_stop("formula", sub("use a linear model for", "use a GLM (glm) for",
                                  conditionMessage(e), fixed = TRUE))
    }
  )
  if (is.null(f)) f <- stats::as.formula(formula)
  lhs <- f[[2L]]
  label <- paste(deparse(lhs), collapse = " ")
  y <- eval(lhs, data, baseenv())
  .pylmer_glmer_check_response(y, label, family, weights, data)
  f
}

.pylmer_glmer_describe <- function(x, bad) {
  rows <- which(bad)
  paste0(length(rows), " row", if (length(rows) > 1L) "s", ", e.g. row ", rows[1L],
         " with ", format(x[rows[1L]], digits = 6L))
}

# Values that are not whole numbers (beyond rounding error).
.pylmer_not_whole <- function(x) !is.na(x) & abs(x - round(x)) > 1e-7 * pmax(1, abs(x))

# The response must lie in the family's domain: binomial 0/1, proportions (whole numbers
# of successes with weights = trials), two-level factors or cbind(successes, failures) of
# whole numbers; Poisson and negative binomial whole non-negative counts; Gamma and
# inverse Gaussian positive values.  `weights` is a column name (in `data`), per-row
# values, NULL (none: proportions are refused), or NA (unknown: not checked).
.pylmer_glmer_check_response <- function(y, label, family, weights = NA, data = NULL) {
  if (family == "binomial") {
    if (is.matrix(y)) {
      if (ncol(y) != 2L) {
        .pylmer_stop("data", "the binomial response '", label, "' has ", ncol(y),
                     " columns; use cbind(successes, failures)")
      }
      for (k in 1:2) {
        bad <- !is.na(y[, k]) & y[, k] < 0
        if (any(bad)) {
          what <- c("successes", "failures")[k]
          .pylmer_stop("data", "the binomial response '", label, "' has negative ", what,
                       " (column ", k, " of cbind): ", .pylmer_glmer_describe(y[, k], bad))
        }
        bad <- .pylmer_not_whole(y[, k])
        if (any(bad)) {
          what <- c("successes", "failures")[k]
          .pylmer_stop("data", "the binomial response '", label, "' has ", what,
                       " that are not whole numbers (column ", k, " of cbind): ",
                       .pylmer_glmer_describe(y[, k], bad))
        }
      }
      return(invisible())
    }
    if (is.factor(y) || is.character(y) || is.logical(y)) {
      classes <- if (is.factor(y)) levels(droplevels(y)) else sort(unique(y[!is.na(y)]))
      if (length(classes) > 2L) {
        shown <- if (length(classes) > 6L) c(utils::head(classes, 6L), "...") else classes
        .pylmer_stop("data", "the binomial response '", label, "' has ", length(classes),
                     " classes (", paste0("'", shown, "'", collapse = ", "), "); a binomial ",
                     "model needs two (the first level is the failure)")
      }
      return(invisible())
    }
    if (!is.numeric(y)) {
      .pylmer_stop("data", "the binomial response '", label, "' must be 0/1, a proportion, ",
                   "a two-level factor or cbind(successes, failures), not ", class(y)[1L])
    }
    bad <- !is.na(y) & (y < 0 | y > 1)
    if (any(bad)) {
      .pylmer_stop("data", "the binomial response '", label, "' has values outside [0, 1]: ",
                   .pylmer_glmer_describe(y, bad), "; give counts as ",
                   "cbind(successes, failures) or proportions with weights = trials")
    }
    w <- if (is.character(weights) && !is.null(data)) data[[weights]] else weights
    if (identical(weights, NA)) {
      # weights unknown: nothing more to check
    } else if (is.numeric(w) && length(w) == length(y)) {
      bad <- .pylmer_not_whole(y * w)
      if (any(bad)) {
        where <- if (is.character(weights)) paste0("the weights column '", weights, "'") else
          "the weights"
        .pylmer_stop("data", "the binomial response '", label, "' times ", where,
                     " (the trials) is not a whole number of successes: ",
                     .pylmer_glmer_describe(y * w, bad), "; give proportions with weights ",
                     "= the numbers of trials, or cbind(successes, failures)")
      }
    } else if (is.null(weights)) {
      bad <- .pylmer_not_whole(y)
      if (any(bad)) {
        .pylmer_stop("data", "the binomial response '", label, "' has proportions (values ",
                     "strictly between 0 and 1) but no weights: ", .pylmer_glmer_describe(y, bad),
                     "; pass weights = the numbers of trials, or give ",
                     "cbind(successes, failures)")
      }
    }
    return(invisible())
  }
  if (!is.numeric(y) || is.matrix(y)) {
    .pylmer_stop("data", "the ", family, " response '", label, "' must be one numeric ",
                 "column, not ", class(y)[1L])
  }
  if (family %in% c("poisson", "negative_binomial")) {
    bad <- !is.na(y) & y < 0
    if (any(bad)) {
      .pylmer_stop("data", "the ", family, " response '", label, "' has negative counts: ",
                   .pylmer_glmer_describe(y, bad))
    }
    bad <- .pylmer_not_whole(y)
    if (any(bad)) {
      .pylmer_stop("data", "the ", family, " response '", label, "' must be whole counts; ",
                   "it has values that are not whole numbers: ", .pylmer_glmer_describe(y, bad),
                   if (family == "poisson") "; for a positive continuous outcome use Gamma")
    }
  } else {
    bad <- !is.na(y) & y <= 0
    if (any(bad)) {
      .pylmer_stop("data", "the ", family, " response '", label, "' must be positive; it has ",
                   "values <= 0: ", .pylmer_glmer_describe(y, bad))
    }
  }
  invisible()
}

# glmerControl arguments: `maxfun` goes into optCtrl under the name the optimizer knows
# (glmer's default optimizers, bobyqa then Nelder_Mead, call it maxfun).
.pylmer_glmer_control_args <- function(control) {
  if (is.null(control)) return(list())
  args <- control[!vapply(control, is.null, TRUE)]
  if (!is.null(args$maxfun)) {
    name <- if (identical(args$optimizer, "nloptwrap")) "maxeval" else "maxfun"
    args$optCtrl[[name]] <- args$maxfun
    args$maxfun <- NULL
  }
  if (!is.null(args$optCtrl)) args$optCtrl <- as.list(args$optCtrl)
  for (nm in c("check.conv.grad", "check.conv.singular", "check.conv.hess")) {
    if (is.list(args[[nm]])) args[[nm]] <- do.call(lme4::.makeCC, args[[nm]])
  }
  unknown <- setdiff(names(args), names(formals(lme4::glmerControl)))
  if (length(unknown)) {
    .pylmer_stop("argument", "glmerControl of lme4 ", as.character(utils::packageVersion("lme4")),
                 " has no option ", .pylmer_quote(unknown), " (given in control)")
  }
  args
}

# ------------------------------------------------------------------ fit + extract

# The glmer (or glmer.nb) call, evaluated in `env` (which holds data, w and o).
.pylmer_glmer_call <- function(f, family, link, nAGQ, control, weights, offset, na_action,
                               codings = NULL) {
  na <- if (identical(na_action, "error")) quote(stats::na.fail) else quote(stats::na.omit)
  ctrl <- do.call(lme4::glmerControl, .pylmer_glmer_control_args(control))
  if (is.character(offset)) {
    # an offset column goes into the formula: lme4's predict() ignores the `offset`
    # argument for new data, but not an offset() term
    env <- environment(f)
    f[[3L]] <- call("+", f[[3L]], call("offset", as.name(offset)))
    environment(f) <- env
  }
  call <- if (family == "negative_binomial") {
    bquote(lme4::glmer.nb(.(f), data = data, nAGQ = .(nAGQ), control = .(ctrl),
                          na.action = .(na)))
  } else {
    bquote(lme4::glmer(.(f), data = data, family = .(.pylmer_glmer_family_call(family, link)),
                       nAGQ = .(nAGQ), control = .(ctrl), na.action = .(na)))
  }
  if (!is.null(weights)) call$weights <- if (is.character(weights)) as.name(weights) else quote(w)
  if (is.numeric(offset)) call$offset <- quote(o)
  if (length(codings)) call$contrasts <- codings
  call
}

# Fit `formula` on the data bound as `name` and return the merMod and every result.
.pylmer_glmer_fit <- function(name, formula, family = "binomial", link = "logit", nAGQ = 1L,
                              control = NULL, weights = NULL, offset = NULL,
                              na_action = "omit", contrasts = NULL) {
  data <- get(name, envir = .pylmer_store)
  f <- .pylmer_glmer_formula(formula, data, family, weights)
  env <- new.env(parent = globalenv())
  env$data <- data
  environment(f) <- env
  for (arg in list(list("weights", weights), list("offset", offset))) {
    if (is.character(arg[[2L]]) && !arg[[2L]] %in% names(data)) {
      .pylmer_stop("data", "the ", arg[[1L]], " column '", arg[[2L]], "' is not in the data")
    }
  }
  if (is.numeric(weights)) env$w <- as.numeric(weights)
  if (is.numeric(offset)) env$o <- as.numeric(offset)
  call <- .pylmer_glmer_call(f, family, link, as.integer(nAGQ), control, weights, offset,
                             na_action, .pylmer_inf_contrasts(contrasts, data, f))
  extra <- c(if (is.character(weights)) weights, if (is.character(offset)) offset)
  vars <- intersect(c(all.vars(f), extra), names(data))
  model <- tryCatch(eval(call, env), error = function(e) .pylmer_lmer_explain(e, f, data, vars))
  n_na <- vapply(vars, function(v) sum(is.na(data[[v]])), 0L)
  c(list(model = model, na_counts = n_na[n_na > 0L]), .pylmer_glmer_extract(model))
}

# lmer.R's accessors plus what a GLMM adds: Wald z tests as lme4's summary reports them
# (p-values from the normal distribution), the family, nAGQ and glmer.nb's theta.
.pylmer_glmer_extract <- function(m) {
  out <- .pylmer_lmer_extract(m)
  fe <- out$fixef
  fam <- stats::family(m)
  out$fixef <- data.frame(
    estimate = fe$estimate, std_error = fe$std_error, z_value = fe$t_value,
    p_value = 2 * stats::pnorm(abs(fe$t_value), lower.tail = FALSE), row.names = rownames(fe)
  )
  out$family <- fam$family
  out$link <- fam$link
  out$nagq <- as.integer(m@devcomp$dims[["nAGQ"]])
  out$nb_theta <- if (startsWith(fam$family, "Negative Binomial")) {
    lme4::getME(m, "glmer.nb.theta")
  } else {
    NA_real_
  }
  out$has_scale <- lme4::getME(m, "devcomp")$dims[["useSc"]] == 1L
  out
}

# ------------------------------------------------------------------ predict, refit, simulate

.pylmer_glmer_predict <- function(m, name = NULL, include_random = TRUE,
                                  allow_new_levels = TRUE, type = "response") {
  re_form <- if (include_random) NULL else NA
  if (is.null(name)) return(unname(stats::predict(m, re.form = re_form, type = type)))
  newdata <- get(name, envir = .pylmer_store)
  .pylmer_lmer_check_columns(m, newdata, include_random)
  offset <- stats::getCall(m)$offset
  if (identical(offset, quote(o))) {
    .pylmer_stop("data", "the model was fitted with an offset given as values; to predict ",
                 "new data give the offset as a column name (offset='col') or in the formula ",
                 "(+ offset(log(col)))")
  }
  if (nrow(newdata) == 0L) return(numeric())
  .pylmer_lmer_check_levels(m, newdata, allow_new_levels)
  .pylmer_predict_rows(m, newdata, include_random, type = type,
                       allow.new.levels = allow_new_levels)
}

# newresp: a vector (0/1, proportions, counts) or, for a cbind() response, a data frame of
# successes and failures.
.pylmer_glmer_refit <- function(m, newresp) {
  if (is.data.frame(newresp)) newresp <- as.matrix(newresp)
  n <- NROW(newresp)
  if (n != stats::nobs(m)) {
    .pylmer_stop("data", "newresp has ", n, " values; the model has ", stats::nobs(m),
                 " observations")
  }
  resp <- stats::model.response(m@frame)
  if (is.matrix(resp) && is.null(dim(newresp))) {
    # successes (what simulate() returns for a cbind() response): keep each row's trials
    newresp <- cbind(newresp, rowSums(resp) - newresp)
  }
  .pylmer_glmer_check_response(newresp, "newresp", .pylmer_glmer_family_name(m),
                               if (is.matrix(newresp)) NA else stats::weights(m, type = "prior"))
  model <- lme4::refit(m, newresp = newresp)
  c(list(model = model), .pylmer_glmer_extract(model))
}

.pylmer_glmer_family_name <- function(m) {
  fam <- stats::family(m)$family
  if (startsWith(fam, "Negative Binomial")) "negative_binomial" else fam
}

# Simulated responses as plain numbers: successes for a cbind() response, 0/1 for a
# factor response (1 = not the first level), else lme4's values.
.pylmer_glmer_simulate <- function(m, nsim = 1L, seed = NULL) {
  if (stats::family(m)$family == "inverse.gaussian" &&
      !requireNamespace("statmod", quietly = TRUE)) {
    .pylmer_stop("data", "simulating an inverse Gaussian model needs the R package statmod")
  }
  sims <- stats::simulate(m, nsim = nsim, seed = seed)
  out <- lapply(sims, function(s) {
    if (is.matrix(s)) s[, 1L] else if (is.factor(s)) as.numeric(s != levels(s)[1L]) else s
  })
  out <- as.data.frame(out, optional = TRUE)
  names(out) <- names(sims)
  out
}

# ------------------------------------------------------------------ script writer

.pylmer_glmer_write_script <- function(name, dir, stem, formula, family = "binomial",
                                       link = "logit", nAGQ = 1L, control = NULL,
                                       weights = NULL, offset = NULL, contrasts = NULL) {
  data <- get(name, envir = .pylmer_store)
  f <- stats::as.formula(formula)
  call <- .pylmer_glmer_call(f, family, link, as.integer(nAGQ), NULL, weights, offset, "omit",
                             .pylmer_inf_contrasts(contrasts, data, f))
  formula <- paste(deparse(call[[2L]], width.cutoff = 500L), collapse = " ")
  call[[2L]] <- NULL
  call$na.action <- NULL
  ctrl <- .pylmer_glmer_control_args(control)
  call$control <- as.call(c(list(as.name("glmerControl")), ctrl))
  fun <- if (family == "negative_binomial") "glmer.nb" else "glmer"
  args <- vapply(names(call)[-1L], function(a) {
    paste0(a, " = ", paste(deparse(call[[a]], width.cutoff = 500L, backtick = TRUE),
                           collapse = " "))
  }, "")
  values <- c(
    if (is.numeric(weights)) sprintf("w <- c(%s)", paste(sprintf("%.17g", weights), collapse = ", ")),
    if (is.numeric(offset)) sprintf("o <- c(%s)", paste(sprintf("%.17g", offset), collapse = ", "))
  )
  lines <- c(
    .pylmer_script_data(data, dir, stem),
    values,
    sprintf("m <- %s(%s, %s)", fun, formula, paste(args, collapse = ", ")),
    "print(summary(m))"
  )
  path <- file.path(dir, paste0(stem, ".R"))
  writeLines(lines, path)
  path
}
