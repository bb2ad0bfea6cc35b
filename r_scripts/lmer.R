# R side of pylmer.lmer: fit a linear mixed model with lme4 and extract everything the
# Python LmerModel exposes in ONE call; then the on-request helpers (Satterthwaite,
# predict, refit, confint, simulate, anova, script writer).  Sourced by pylmer/_r.py
# after bridge.R into the private environment.

# ------------------------------------------------------------------ validation

.pylmer_lmer_formula <- function(formula, data) {
  f <- tryCatch(
    stats::as.formula(formula),
    error = function(e) {
      odd <- names(data)[make.names(names(data)) != names(data)]
      hint <- if (length(odd)) {
        paste0(" (quote column names that are not R names with backticks, e.g. `",
               odd[1L], "`)")
      } else {
        ""
      }
      .pylmer_stop("formula", "cannot parse the formula '", formula, "': ",
                   conditionMessage(e), hint)
    }
  )
  if (length(f) != 3L) .pylmer_stop("formula", "the formula '", formula, "' has no response")
  if (is.null(lme4::findbars(f))) {
    .pylmer_stop("formula", "the formula '", formula, "' has no random-effects term such as ",
                 "(1 | group); use a linear model for purely fixed effects")
  }
  vars <- all.vars(f)
  missing <- vars[!vars %in% names(data) & !vapply(vars, exists, TRUE, envir = baseenv())]
  if (length(missing)) {
    .pylmer_stop("formula", "the formula names column(s) not in the data: ",
                 paste0("'", missing, "'", collapse = ", "))
  }
  response <- eval(f[[2L]], data, baseenv())
  if (!is.numeric(response) || is.factor(response)) {
    .pylmer_stop("data", "the response '", paste(deparse(f[[2L]]), collapse = " "),
                 "' must be numeric, not ", class(response)[1L])
  }
  f
}

# lmerControl arguments from the Python options (LmerControl.to_r(): lmerControl's own
# names; optCtrl a named list; check.conv.* lists of action/tol/relTol).  A legacy `maxfun`
# goes into optCtrl under the name the optimizer knows.  check.conv.nobsmax/nparmax exist
# in lmerControl from lme4 1.1-38 on; before that pylmer applies them itself
# (.pylmer_lmer_conv_policy) and they are dropped here.
.pylmer_lmer_control_args <- function(control) {
  if (is.null(control)) return(list())
  args <- control[!vapply(control, is.null, TRUE)]
  if (!is.null(args$maxfun)) {
    nlopt <- is.null(args$optimizer) || identical(args$optimizer, "nloptwrap")
    args$optCtrl[[if (nlopt) "maxeval" else "maxfun"]] <- args$maxfun
    args$maxfun <- NULL
  }
  if (!is.null(args$optCtrl)) args$optCtrl <- as.list(args$optCtrl)
  for (nm in c("check.conv.grad", "check.conv.singular", "check.conv.hess")) {
    if (is.list(args[[nm]])) args[[nm]] <- do.call(lme4::.makeCC, args[[nm]])
  }
  known <- names(formals(lme4::lmerControl))
  args[setdiff(names(args), known)] <- NULL
  opt <- args$optimizer
  if (!is.null(opt)) .pylmer_lmer_check_optimizer(opt)
  args
}

# The optimizer exists in this R (lme4's own, or one from an optional package).
.pylmer_lmer_check_optimizer <- function(opt) {
  needs <- c(optimx = "optimx", nmkbw = "dfoptim")
  if (opt %in% names(needs) && !requireNamespace(needs[[opt]], quietly = TRUE)) {
    .pylmer_stop("argument", "control.optimizer '", opt, "' needs the R package ",
                 needs[[opt]], ", which is not installed")
  }
  if (identical(opt, "nmkbw") && !exists("nmkbw", envir = asNamespace("lme4"))) {
    .pylmer_stop("argument", "control.optimizer 'nmkbw' needs lme4 >= 1.1-32 (this R has ",
                 as.character(utils::packageVersion("lme4")), ")")
  }
}

.pylmer_lmer_control <- function(control) {
  do.call(lme4::lmerControl, .pylmer_lmer_control_args(control))
}

# lmerControl's argument names in this R (tests: LmerControl covers them all).
.pylmer_lmer_control_formals <- function() names(formals(lme4::lmerControl))

# ------------------------------------------------------------------ convergence checks

# lme4 1.1-38's policy for the derivative-based convergence checks (gradient and Hessian
# at the optimum): by default they run only when nobs < check.conv.nobsmax (1e4) and the
# number of variance parameters < check.conv.nparmax (10), and never for singular fits
# (whose gradient messages lme4 already drops).  An explicit calc.derivs wins.  With an
# older lme4, pylmer fits with calc.derivs = FALSE and, when the policy says so, computes
# the derivatives afterwards exactly as lme4's optimizer wrapper does (deriv12 of the
# deviance function at the optimum, then checkConv), storing them in optinfo.
.pylmer_lmer_conv_policy <- function(control) {
  list(
    user = control[["calc.derivs"]],
    nobsmax = if (is.null(control[["check.conv.nobsmax"]])) 1e4 else control[["check.conv.nobsmax"]],
    nparmax = if (is.null(control[["check.conv.nparmax"]])) 10 else control[["check.conv.nparmax"]],
    native = "check.conv.nobsmax" %in% names(formals(lme4::lmerControl))
  )
}

# The control of the fit itself: calc.derivs = FALSE when the policy decides later.
.pylmer_lmer_fit_control <- function(control, policy) {
  if (is.null(policy$user) && !policy$native) {
    control <- c(control[setdiff(names(control), "calc.derivs")], list(calc.derivs = FALSE))
  }
  .pylmer_lmer_control(control)
}

# Apply the policy to a fitted model: returns list(model, note); `note` says why the
# checks were skipped (or NULL).
.pylmer_lmer_conv_checks <- function(m, policy) {
  if (!is.null(policy$user)) return(list(model = m, note = NULL))
  nobs <- stats::nobs(m)
  npar <- length(m@theta)
  why <- c(
    if (nobs >= policy$nobsmax) {
      sprintf("%d observations (check_conv_nobsmax = %d)", nobs, as.integer(policy$nobsmax))
    },
    if (npar >= policy$nparmax) {
      sprintf("%d variance parameters (check_conv_nparmax = %d)", npar,
              as.integer(policy$nparmax))
    }
  )
  cc <- eval(m@call$control)$checkConv
  sing_tol <- cc$check.conv.singular$tol
  singular <- any(m@theta[m@lower == 0] < sing_tol)
  if (singular && !length(why)) why <- "a singular fit"
  if (length(why)) {
    note <- paste0("derivative-based convergence checks skipped (lme4 >= 1.1-38 policy): ",
                   paste(why, collapse = " and "),
                   "; LmerControl(calc_derivs=True) runs them")
    return(list(model = m, note = note))
  }
  if (policy$native) return(list(model = m, note = NULL))
  devfun <- lme4::getME(m, "devfun")  # the model's own objects: restored on exit
  theta <- as.numeric(m@theta) + 0
  on.exit(devfun(theta + 0), add = TRUE)
  derivs <- lme4:::deriv12(devfun, theta, fx = devfun(theta + 0))
  conv <- lme4:::checkConv(derivs, theta, ctrl = cc, lbound = m@lower)
  m@optinfo$derivs <- derivs
  m@optinfo$conv$lme4 <- if (is.null(conv)) list() else conv
  list(model = m, note = NULL)
}

# The derivatives the convergence checks used (NULL when they were skipped).
.pylmer_lmer_derivs <- function(m) {
  d <- m@optinfo$derivs
  if (is.null(d)) return(NULL)
  list(gradient = unname(d$gradient), hessian = unname(as.matrix(d$Hessian)))
}

# ------------------------------------------------------------------ lme4's errors explained

# The grouping factors of the formula's random terms over the rows lme4 uses (no missing
# value in the model's columns), named like lme4 names them ("Subject", "b:a").
.pylmer_lmer_groups <- function(f, data, vars) {
  keep <- stats::complete.cases(data[vars])
  out <- list()
  for (bar in lme4::findbars(f)) {
    label <- paste(deparse(bar[[3L]]), collapse = " ")
    if (!is.null(out[[label]])) next
    g <- tryCatch(eval(bar[[3L]], data[keep, , drop = FALSE], baseenv()),
                  error = function(e) NULL)
    if (!is.null(g)) out[[label]] <- droplevels(as.factor(g))
  }
  out
}

.pylmer_quote <- function(x) paste0("'", x, "'", collapse = ", ")

# Re-signal lme4's errors about the data with messages that name the column, factor or
# term at fault (missing values, no complete rows, too few or too many groups); other
# errors go on unchanged.
.pylmer_lmer_explain <- function(e, f, data, vars) {
  msg <- conditionMessage(e)
  n_na <- vapply(vars, function(v) sum(is.na(data[[v]])), 0L)
  n_na <- n_na[n_na > 0L]
  na_text <- paste(sprintf("'%s' (%d missing)", names(n_na), n_na), collapse = ", ")
  if (grepl("missing values in object", msg, fixed = TRUE)) {
    .pylmer_stop("data", "the data have missing values in the model's columns ",
                 "(na_action='error'): ", na_text)
  }
  if (grepl("0 (non-NA) cases", msg, fixed = TRUE)) {
    .pylmer_stop("data", "no complete rows to fit: each of the ", nrow(data), " rows has a ",
                 "missing value in the model's columns: ", na_text)
  }
  if (grepl("NA/NaN/Inf", msg, fixed = TRUE)) {
    n_inf <- vapply(vars, function(v) {
      x <- data[[v]]
      if (is.numeric(x)) sum(is.infinite(x)) else 0L
    }, 0L)
    n_inf <- n_inf[n_inf > 0L]
    if (length(n_inf)) {
      .pylmer_stop("data", "the model's columns hold infinite values, which lme4 cannot fit: ",
                   paste(sprintf("'%s' (%d infinite)", names(n_inf), n_inf), collapse = ", "),
                   "; drop or replace those rows")
    }
  }
  one <- grepl("grouping factors must have > 1 sampled level", msg, fixed = TRUE)
  many <- grepl("number of levels of each grouping factor must be < number of observations",
                msg, fixed = TRUE)
  if (one || many) {
    groups <- .pylmer_lmer_groups(f, data, vars)
    nobs <- sum(stats::complete.cases(data[vars]))
    nlev <- vapply(groups, nlevels, 0L)
    if (one && any(nlev < 2L)) {
      bad <- names(nlev)[nlev < 2L]
      lv <- levels(groups[[bad[1L]]])
      stop(simpleError(paste0(
        "grouping factor ", .pylmer_quote(bad), " has only ", nlev[bad][1L], " level",
        if (length(lv)) paste0(" (", .pylmer_quote(lv), ")"), " in the rows used; a ",
        "random effect needs at least 2 groups (lme4: ", msg, ")"
      )))
    }
    if (many && any(nlev >= nobs)) {
      bad <- names(nlev)[nlev >= nobs]
      stop(simpleError(paste0(
        "grouping factor ", .pylmer_quote(bad), " has as many levels (", nlev[bad][1L],
        ") as observations (", nobs, "): every observation is its own group, so its ",
        "variance cannot be told apart from the residual variance (lme4: ", msg, ")"
      )))
    }
  }
  stop(e)
}

# ------------------------------------------------------------------ fit + extract

# Fit `formula` on the data bound as `name` and return the merMod and every result.
.pylmer_lmer_fit <- function(name, formula, REML = TRUE, control = NULL, weights = NULL,
                             na_action = "omit", contrasts = NULL) {
  data <- get(name, envir = .pylmer_store)
  f <- .pylmer_lmer_formula(formula, data)
  # The call is evaluated in a small environment that holds only the data and the
  # weights: lme4's update()/profile() and lmerTest re-evaluate the call there later.
  env <- new.env(parent = globalenv())
  env$data <- data
  environment(f) <- env
  na <- if (identical(na_action, "error")) quote(stats::na.fail) else quote(stats::na.omit)
  # the control goes into the call as a value: bootMer() evaluates it in its caller
  policy <- .pylmer_lmer_conv_policy(control)
  call <- bquote(lme4::lmer(.(f), data = data, REML = .(REML),
                            control = .(.pylmer_lmer_fit_control(control, policy)),
                            na.action = .(na)))
  if (!is.null(weights)) {
    if (is.character(weights)) {
      if (!weights %in% names(data)) {
        .pylmer_stop("data", "the weights column '", weights, "' is not in the data")
      }
      env$w <- data[[weights]]
    } else {
      env$w <- as.numeric(weights)
    }
    call$weights <- quote(w)
  }
  codings <- .pylmer_inf_contrasts(contrasts, data, f)  # inference.R
  if (length(codings)) call$contrasts <- codings
  vars <- intersect(c(all.vars(f), if (is.character(weights)) weights), names(data))
  model <- tryCatch(eval(call, env), error = function(e) .pylmer_lmer_explain(e, f, data, vars))
  n_na <- vapply(vars, function(v) sum(is.na(data[[v]])), 0L)
  checked <- .pylmer_lmer_conv_checks(model, policy)
  model <- checked$model
  out <- c(list(model = model, na_counts = n_na[n_na > 0L]), .pylmer_lmer_extract(model),
           list(satterthwaite_deferred = TRUE))
  out$messages <- c(out$messages, checked$note)
  out
}

# Every accessor of a fitted model, as plain vectors and data frames.
.pylmer_lmer_extract <- function(m) {
  beta <- lme4::fixef(m)
  V <- as.matrix(stats::vcov(m, correlation = FALSE))
  se <- sqrt(diag(V))
  # the conditional variances (ranef_sd) are computed by pylmer on first access, from
  # lme4's factor (condvar.R, pylmer/models/condvar.py); the Satterthwaite df too
  ranef <- lapply(lme4::ranef(m, condVar = FALSE), as.data.frame, optional = TRUE)
  coefs <- lapply(stats::coef(m), function(r) as.data.frame(r, optional = TRUE))
  vc <- .pylmer_varcorr(m)
  ll <- stats::logLik(m)
  conv <- m@optinfo$conv
  lme4_messages <- as.character(unlist(conv$lme4$messages))
  opt_warnings <- as.character(unlist(m@optinfo$warnings))
  failed <- !is.null(conv$lme4$code) && any(conv$lme4$code != 0)
  rows <- as.integer(rownames(m@frame))
  res <- stats::residuals(m)
  list(
    fixef = data.frame(
      estimate = unname(beta), std_error = unname(se), t_value = unname(beta / se),
      row.names = names(beta)
    ),
    ranef = ranef,
    coef = coefs,
    varcorr = vc,
    sigma = stats::sigma(m),
    theta = lme4::getME(m, "theta"),
    loglik = as.numeric(ll),
    df = as.integer(attr(ll, "df")),
    aic = stats::AIC(m),
    bic = stats::BIC(m),
    deviance = suppressWarnings(stats::deviance(m)),
    reml_criterion = if (lme4::isLMM(m)) lme4::REMLcrit(m) else NA_real_,  # glmer.R too
    nobs = as.integer(stats::nobs(m)),
    ngrps = lme4::ngrps(m),
    vcov = V,
    fitted = unname(stats::fitted(m)),
    residuals = unname(res),
    scaled_residuals = unname(stats::residuals(m, type = "pearson", scaled = TRUE)),
    rows = rows,
    is_singular = lme4::isSingular(m),
    converged = conv$opt == 0 && !failed && length(opt_warnings) == 0L,
    messages = c(lme4_messages, opt_warnings),
    reml = lme4::isREML(m),
    optimizer = m@optinfo$optimizer,
    fixed_levels = .pylmer_lmer_fixed_levels(m),
    response = paste(deparse(stats::formula(m)[[2L]]), collapse = " ")
  )
}

# Levels of the factor (or character) columns the fixed part uses: predict() checks
# new data against them.
.pylmer_lmer_fixed_levels <- function(m) {
  vars <- all.vars(lme4::nobars(stats::formula(m))[[3L]])
  frame <- m@frame
  out <- list()
  for (v in intersect(vars, names(frame))) {
    x <- frame[[v]]
    if (is.factor(x)) out[[v]] <- levels(x)
    else if (is.character(x)) out[[v]] <- sort(unique(x))
  }
  out
}

# ------------------------------------------------------------------ Satterthwaite

.pylmer_lmer_satterthwaite <- function(m) {
  # pylmer's own computation (satterthwaite.R); lmerTest's eigenvalue notes as warnings;
  # lmerTest's version of the model from the same derivatives, for pylmer.inference
  res <- tryCatch(.pylmer_lmer_satterthwaite_table(m, lmertest = TRUE),
                  error = function(e) e)
  if (inherits(res, "error")) {
    warning("Satterthwaite df unavailable: ", conditionMessage(res), call. = FALSE)
    return(NULL)
  }
  for (note in res$notes) warning(note, call. = FALSE)
  list(table = res$table, lmertest = res$lmertest)
}

# ------------------------------------------------------------------ predict

.pylmer_lmer_check_levels <- function(m, newdata, allow_new_levels) {
  for (v in names(fl <- .pylmer_lmer_fixed_levels(m))) {
    if (!v %in% names(newdata)) next
    x <- as.character(newdata[[v]])
    new <- setdiff(unique(x[!is.na(x)]), fl[[v]])
    if (length(new)) {
      .pylmer_stop("data", "column '", v, "' of newdata has level(s) not seen in training: ",
                   paste0("'", new, "'", collapse = ", "), " (a fixed effect cannot predict ",
                   "unseen levels)")
    }
  }
  if (allow_new_levels) return(invisible())
  env <- environment(stats::formula(m))
  for (bar in lme4::findbars(stats::formula(m))) {
    grp <- bar[[3L]]
    label <- paste(deparse(grp), collapse = " ")
    if (!label %in% names(m@flist)) next
    x <- as.character(eval(grp, newdata, env))
    new <- setdiff(unique(x[!is.na(x)]), levels(m@flist[[label]]))
    if (length(new)) {
      shown <- if (length(new) > 10) c(utils::head(new, 10), "...") else new
      .pylmer_stop("data", "grouping factor '", label, "' of newdata has ", length(new),
                   " level(s) not seen in training: ", paste0("'", shown, "'", collapse = ", "),
                   "; pass allow_new_levels=True to predict them from the fixed part alone")
    }
  }
}

# newdata must hold the columns the prediction uses, with the kind of values (numbers or
# levels) the model was fitted on.
.pylmer_lmer_check_columns <- function(m, newdata, include_random) {
  f <- stats::formula(m)
  rhs <- if (include_random) f[[3L]] else lme4::nobars(f)[[3L]]
  vars <- all.vars(rhs)
  missing <- setdiff(vars, names(newdata))
  missing <- missing[!vapply(missing, exists, TRUE, envir = baseenv())]
  if (length(missing)) {
    .pylmer_stop("data", "newdata lacks column(s) the model uses: ", .pylmer_quote(missing))
  }
  frame <- m@frame
  if (nrow(newdata) == 0L) return(invisible())  # an empty CSV column has no type
  for (v in intersect(all.vars(lme4::nobars(f)[[3L]]), names(frame))) {
    if (is.numeric(frame[[v]]) && !is.numeric(newdata[[v]])) {
      .pylmer_stop("data", "column '", v, "' of newdata holds ", class(newdata[[v]])[1L],
                   " values; the model was fitted with numbers there")
    }
  }
}

.pylmer_lmer_predict <- function(m, name = NULL, include_random = TRUE,
                                 allow_new_levels = TRUE) {
  re_form <- if (include_random) NULL else NA
  if (is.null(name)) return(unname(stats::predict(m, re.form = re_form)))
  newdata <- get(name, envir = .pylmer_store)
  .pylmer_lmer_check_columns(m, newdata, include_random)
  if (nrow(newdata) == 0L) return(numeric())
  .pylmer_lmer_check_levels(m, newdata, allow_new_levels)
  .pylmer_predict_rows(m, newdata, include_random, allow.new.levels = allow_new_levels)
}

# predict() on the rows of newdata that hold every value the prediction needs; NA on the
# others (lme4 1.1 fails on them with "non-conformable arguments" when a factor is
# missing).  `...` goes to predict() (allow.new.levels, type).
.pylmer_predict_rows <- function(m, newdata, include_random, ...) {
  f <- stats::formula(m)
  rhs <- if (include_random) f[[3L]] else .pylmer_nobars(f)[[3L]]
  ok <- stats::complete.cases(newdata[intersect(all.vars(rhs), names(newdata))])
  out <- rep(NA_real_, nrow(newdata))
  if (any(ok)) {
    rows <- if (all(ok)) newdata else newdata[ok, , drop = FALSE]
    out[ok] <- stats::predict(m, newdata = rows, re.form = if (include_random) NULL else NA,
                              ...)
  }
  unname(out)
}

# ------------------------------------------------------------------ refit, intervals

.pylmer_lmer_refit <- function(m, newresp) {
  if (length(newresp) != stats::nobs(m)) {
    .pylmer_stop("data", "newresp has ", length(newresp), " values; the model has ",
                 stats::nobs(m), " observations")
  }
  newresp <- as.numeric(newresp)
  # one value per used row: stop refit() from dropping lme4's NA rows a second time
  attr(newresp, "na.action") <- attr(m@frame, "na.action")
  model <- lme4::refit(m, newresp = newresp)
  c(list(model = model), .pylmer_lmer_extract(model),
    list(satterthwaite_deferred = TRUE))
}

.pylmer_lmer_refit_ml <- function(m) {
  model <- lme4::refitML(m)
  c(list(model = model), .pylmer_lmer_extract(model),
    list(satterthwaite_deferred = TRUE))
}

# confint.merMod with every argument pylmer passes: parm, boot.type and the profile
# options (maxpts, delta, delta.cutoff) as a list.
.pylmer_lmer_confint <- function(m, method = "Wald", level = 0.95, nsim = 500L, seed = NULL,
                                 parm = NULL, boot_type = "perc", profile_args = NULL,
                                 old_names = TRUE) {
  if (!is.null(seed)) set.seed(seed)
  args <- c(list(level = level, method = method, nsim = nsim, boot.type = boot_type,
                 quiet = TRUE, oldNames = old_names),
            if (!is.null(parm)) list(parm = as.character(parm)), profile_args)
  ci <- do.call(stats::confint, c(list(quote(m)), args))
  as.matrix(ci)
}

# The names of the variance parameters in lme4's two schemes (confint's oldNames):
# .sig01, ..., .sigma and sd_(Intercept)|Subject, cor_..., sigma.
.pylmer_lmer_parnames <- function(m) {
  use_sc <- as.logical(m@devcomp$dims[["useSc"]])
  list(old = lme4:::profnames(m, TRUE, useSc = use_sc),
       new = lme4:::profnames(m, FALSE, useSc = use_sc))
}

.pylmer_lmer_simulate <- function(m, nsim = 1L, seed = NULL) {
  sims <- stats::simulate(m, nsim = nsim, seed = seed)
  attr(sims, "seed") <- NULL
  rownames(sims) <- NULL
  sims
}

# Likelihood-ratio tests; `labels` name the models in the table as symbols would in R.
.pylmer_lmer_anova <- function(models, labels, refit = TRUE) {
  env <- list2env(stats::setNames(models, labels), parent = environment())
  call <- as.call(c(list(quote(stats::anova)), lapply(labels, as.name), list(refit = refit)))
  as.data.frame(eval(call, env))
}

# ------------------------------------------------------------------ script writer

# Write the data as CSV (doubles at full precision) and an R script that refits the model
# in plain R; factor columns keep their level order.  Returns the script's path.
.pylmer_lmer_write_script <- function(name, dir, stem, formula, REML = TRUE, control = NULL,
                                      weights = NULL, contrasts = NULL) {
  data <- get(name, envir = .pylmer_store)
  ctrl <- .pylmer_lmer_control_args(control)
  ctrl_call <- paste(deparse(as.call(c(list(as.name("lmerControl")), ctrl))), collapse = " ")
  w <- if (is.null(weights)) {
    ""
  } else if (is.character(weights)) {
    sprintf(", weights = %s", deparse(as.name(weights), backtick = TRUE))
  } else {
    ", weights = w"
  }
  lines <- c(
    .pylmer_script_data(data, dir, stem),
    if (is.numeric(weights)) {
      sprintf("w <- c(%s)", paste(sprintf("%.17g", weights), collapse = ", "))
    },
    sprintf("m <- lmer(%s, data = data, REML = %s, control = %s%s%s)", formula, REML,
            ctrl_call, w, .pylmer_inf_script_contrasts(contrasts)),
    "print(summary(m))"
  )
  path <- file.path(dir, paste0(stem, ".R"))
  writeLines(lines, path)
  path
}

# The first lines of a written script: write the data beside it as <stem>.csv and read
# them back with the factors' level order (glmer.R's writer uses it too).
.pylmer_script_data <- function(data, dir, stem) {
  out <- data
  for (v in names(out)) {
    if (is.double(out[[v]]) && !inherits(out[[v]], "POSIXct")) {
      out[[v]] <- ifelse(is.na(out[[v]]), NA_character_, sprintf("%.17g", out[[v]]))
    }
  }
  csv <- paste0(stem, ".csv")
  utils::write.csv(out, file.path(dir, csv), row.names = FALSE, na = "NA")
  factors <- Filter(function(v) is.factor(data[[v]]), names(data))
  relevel <- vapply(factors, function(v) {
    sprintf("data[[%s]] <- factor(data[[%s]], levels = %s)", deparse(v), deparse(v),
            paste(deparse(levels(data[[v]])), collapse = " "))
  }, "")
  c(
    "# Written by pylmer: refits the model in plain R with lme4.",
    "# Run from this directory: Rscript <this file>",
    "library(lme4)",
    sprintf("data <- read.csv(%s, check.names = FALSE, stringsAsFactors = FALSE)",
            deparse(csv)),
    unname(relevel)
  )
}
