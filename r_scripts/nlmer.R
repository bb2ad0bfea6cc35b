# R side of pylmer.nlmer: fit a nonlinear mixed model with lme4's nlmer (three-part
# formula, R's self-starting models) and extract everything NlmerModel exposes in ONE
# call; then predict (lme4 has no newdata predict for nlmer) and the script writer.
# Sourced by pylmer.r.session after bridge.R; reuses lmer.R's helpers.

# The formula `resp ~ Nonlin(x, p1, p2, ...) ~ fixed | group` checked: three parts, a
# call as the nonlinear model, columns in the data.
.pylmer_nlmer_formula <- function(formula, data) {
  f <- tryCatch(stats::as.formula(formula), error = function(e) {
    .pylmer_stop("formula", "cannot parse the formula '", formula, "': ", conditionMessage(e))
  })
  three <- length(f) == 3L && is.call(f[[2L]]) && identical(f[[2L]][[1L]], as.name("~")) &&
    length(f[[2L]]) == 3L
  if (!three) {
    .pylmer_stop("formula", "the nlmer formula '", formula, "' must have three parts: ",
                 "response ~ NonlinearModel(x, par1, par2, ...) ~ random part, e.g. ",
                 "'circumference ~ SSlogis(age, Asym, xmid, scal) ~ Asym | Tree'")
  }
  nl <- f[[2L]][[3L]]
  if (!is.call(nl)) {
    .pylmer_stop("formula", "the middle part of '", formula, "' must be a call of a ",
                 "nonlinear model such as SSlogis(age, Asym, xmid, scal)")
  }
  fun <- as.character(nl[[1L]])[1L]
  if (!exists(fun, mode = "function")) {
    .pylmer_stop("formula", "the nonlinear model '", fun, "' is not an R function (R's ",
                 "self-starting models: SSlogis, SSasymp, SSasympOff, SSmicmen, SSfpl, ",
                 "SSgompertz, SSbiexp, ...)")
  }
  if (is.null(.pylmer_findbars(f[[3L]]))) {
    .pylmer_stop("formula", "the last part of '", formula, "' has no random-effects term ",
                 "such as 'Asym | group'")
  }
  f
}

# The nonlinear parameters: the arguments of the model call that are not data columns.
.pylmer_nlmer_params <- function(f, data) {
  nl <- f[[2L]][[3L]]
  setdiff(all.vars(nl), names(data))
}

# Starting values: a named numeric vector (or list(nlpars, theta)); NULL asks R's
# self-starting model for them (getInitial() on the pooled data, as nls would).
.pylmer_nlmer_start <- function(start, f, data) {
  pars <- .pylmer_nlmer_params(f, data)
  if (is.null(start)) {
    pooled <- stats::as.formula(call("~", f[[2L]][[2L]], f[[2L]][[3L]]))
    init <- tryCatch(stats::getInitial(pooled, data = data), error = function(e) {
      .pylmer_stop("argument", "no start given, and the self-starting model could not ",
                   "compute starting values (", conditionMessage(e), "); pass start = ",
                   "{", paste0("'", pars, "': ...", collapse = ", "), "}")
    })
    return(init[pars])
  }
  nlpars <- if (is.list(start) && !is.null(start$nlpars)) start$nlpars else start
  nlpars <- unlist(nlpars)
  missing <- setdiff(pars, names(nlpars))
  if (length(missing)) {
    .pylmer_stop("argument", "start has no value for the parameter ", .pylmer_quote(missing),
                 " of ", deparse(f[[2L]][[3L]]), " (needed: ", .pylmer_quote(pars), ")")
  }
  extra <- setdiff(names(nlpars), pars)
  if (length(extra)) {
    .pylmer_stop("argument", "start names ", .pylmer_quote(extra), ", which is not a ",
                 "parameter of ", deparse(f[[2L]][[3L]]), " (parameters: ",
                 .pylmer_quote(pars), ")")
  }
  bad <- names(nlpars)[!is.finite(nlpars)]
  if (length(bad)) {
    .pylmer_stop("argument", "start[", .pylmer_quote(bad[1L]), "] must be a finite number")
  }
  nlpars <- nlpars[pars]
  if (is.list(start) && !is.null(start$theta)) list(nlpars = nlpars, theta = start$theta)
  else nlpars
}

# Which parameter makes the model misbehave at `start`: the model (or its gradient with
# respect to a parameter) not finite, or a gradient column that is zero on every row.
.pylmer_nlmer_diagnose <- function(f, data, start) {
  nlpars <- if (is.list(start)) start$nlpars else start
  env <- c(as.list(data), as.list(nlpars))
  val <- tryCatch(eval(f[[2L]][[3L]], env, environment(f)), error = function(e) NULL)
  if (is.null(val)) return("the model cannot be evaluated at the start values")
  grad <- attr(val, "gradient")
  bad <- if (!is.null(grad)) colnames(grad)[colSums(!is.finite(grad)) > 0L] else character()
  if (!all(is.finite(val)) || length(bad)) {
    return(paste0("the model ", if (!all(is.finite(val))) "is" else "has a gradient that is",
                  " not finite at the start values",
                  if (length(bad)) paste0(" (check start[", .pylmer_quote(bad), "])")))
  }
  if (!is.null(grad)) {
    flat <- colnames(grad)[colSums(abs(grad) > 1e-12 * max(1, abs(val))) == 0L]
    if (length(flat)) {
      return(paste0("the model does not change with ", .pylmer_quote(flat), " at the start ",
                    "values (gradient zero on every row): check start[",
                    .pylmer_quote(flat[1L]), "]"))
    }
  }
  ""
}

.pylmer_nlmer_call <- function(f, start, control, na_action) {
  na <- if (identical(na_action, "error")) quote(stats::na.fail) else quote(stats::na.omit)
  ctrl <- do.call(lme4::nlmerControl, .pylmer_nlmer_control_args(control))
  bquote(lme4::nlmer(.(f), data = data, start = .(start), control = .(ctrl),
                     na.action = .(na)))
}

# nlmerControl options: optimizer (Nelder_Mead or bobyqa...), optCtrl, maxfun (into optCtrl).
.pylmer_nlmer_control_args <- function(control) {
  if (is.null(control)) return(list())
  args <- control[!vapply(control, is.null, TRUE)]
  if (!is.null(args$maxfun)) {
    args$optCtrl[["maxfun"]] <- args$maxfun
    args$maxfun <- NULL
  }
  if (!is.null(args$optCtrl)) args$optCtrl <- as.list(args$optCtrl)
  unknown <- setdiff(names(args), names(formals(lme4::nlmerControl)))
  if (length(unknown)) {
    .pylmer_stop("argument", "nlmerControl has no option ", .pylmer_quote(unknown),
                 " (given in control)")
  }
  args
}

.pylmer_nlmer_fit <- function(name, formula, start = NULL, control = NULL, na_action = "omit") {
  data <- get(name, envir = .pylmer_store)
  f <- .pylmer_nlmer_formula(formula, data)
  resp <- f[[2L]][[2L]]
  vars <- unique(c(all.vars(resp), intersect(all.vars(f[[2L]][[3L]]), names(data)),
                   all.vars(f[[3L]])))
  pars <- .pylmer_nlmer_params(f, data)
  re_pars <- unique(unlist(lapply(.pylmer_findbars(f[[3L]]), function(b) all.vars(b[[2L]]))))
  bad <- setdiff(re_pars, pars)
  if (length(bad)) {
    .pylmer_stop("formula", "the random part names ", .pylmer_quote(bad), ", which is not ",
                 "a parameter of ", deparse(f[[2L]][[3L]]), " (parameters: ",
                 .pylmer_quote(pars), ")")
  }
  missing <- setdiff(setdiff(vars, pars), names(data))
  if (length(missing)) {
    .pylmer_stop("formula", "the formula names column(s) not in the data: ",
                 .pylmer_quote(missing))
  }
  env <- new.env(parent = globalenv())
  env$data <- data
  environment(f) <- env
  start <- .pylmer_nlmer_start(start, f, data)
  call <- .pylmer_nlmer_call(f, start, control, na_action)
  used <- intersect(vars, names(data))
  model <- tryCatch(eval(call, env), error = function(e) {
    why <- .pylmer_nlmer_diagnose(f, data[stats::complete.cases(data[used]), , drop = FALSE],
                                  start)
    if (nzchar(why)) {
      .pylmer_stop("argument", "nlmer failed: ", conditionMessage(e), "; ", why)
    }
    tryCatch(.pylmer_lmer_explain(e, f[[3L]], data, used), error = function(e2) {
      nl <- if (is.list(start)) start$nlpars else start
      stop(simpleError(paste0(
        "nlmer failed to converge from the start values (",
        paste(names(nl), signif(nl, 6), sep = " = ", collapse = ", "), "): ",
        conditionMessage(e2), "; try other start values (the self-starting model's own: ",
        "start=None) or control={'optimizer': 'bobyqa'}"
      )))
    })
  })
  n_na <- vapply(used, function(v) sum(is.na(data[[v]])), 0L)
  nl <- unlist(if (is.list(start)) start$nlpars else start)
  note <- .pylmer_nlmer_unconverged(model, nl)
  if (nzchar(note)) warning(note, call. = FALSE)
  out <- c(list(model = model, na_counts = n_na[n_na > 0L], start = nl),
           .pylmer_nlmer_extract(model))
  if (nzchar(note)) out$messages <- c(out$messages, note)
  out
}

# When the optimizer stopped early: name the parameter that moved most (relative to its
# start), the one whose start is most likely off.
.pylmer_nlmer_unconverged <- function(m, start) {
  conv <- m@optinfo$conv$opt
  if (is.null(conv) || conv == 0) return("")
  est <- lme4::fixef(m)[names(start)]
  moved <- abs(est - start) / pmax(abs(start), 1e-8)
  p <- names(which.max(moved))
  paste0("nlmer did not converge (optimizer code ", conv, "): the estimates are not ",
         "final; the parameter that moved most from its start is '", p, "' (",
         signif(start[[p]], 6), " -> ", signif(est[[p]], 6), "): start it nearer ",
         "(start['", p, "'] = ", signif(est[[p]], 6), ") or raise control['maxfun']")
}

.pylmer_nlmer_extract <- function(m) {
  out <- .pylmer_lmer_extract(m)
  out$nlpars <- names(lme4::fixef(m))
  out$model_call <- paste(deparse(m@call$formula[[2L]][[3L]]), collapse = " ")
  out$fixed_levels <- list()
  out
}

# Predictions: the nonlinear model evaluated at each row's parameters (the fixed effects
# plus, with include_random, the row's group's conditional modes; zero for unseen groups).
.pylmer_nlmer_predict <- function(m, name = NULL, include_random = TRUE,
                                  allow_new_levels = TRUE) {
  if (is.null(name) && include_random) return(unname(stats::fitted(m)))
  newdata <- if (is.null(name)) m@frame else get(name, envir = .pylmer_store)
  f <- m@call$formula
  nl <- f[[2L]][[3L]]
  beta <- lme4::fixef(m)
  n <- nrow(newdata)
  pars <- lapply(beta, function(b) rep(b, n))
  if (include_random) {
    re <- lme4::ranef(m)
    for (g in names(re)) {
      if (!g %in% names(newdata)) {
        .pylmer_stop("data", "newdata has no column '", g, "' (a grouping factor)")
      }
      key <- as.character(newdata[[g]])
      idx <- match(key, rownames(re[[g]]))
      unseen <- unique(key[is.na(idx) & !is.na(key)])
      if (length(unseen) && !allow_new_levels) {
        .pylmer_stop("data", "newdata has level(s) of '", g, "' the model never saw: ",
                     .pylmer_quote(utils::head(unseen, 5L)))
      }
      for (p in names(re[[g]])) {
        b <- re[[g]][[p]][idx]
        pars[[p]] <- pars[[p]] + ifelse(is.na(b), 0, b)
      }
    }
  }
  cols <- intersect(all.vars(nl), names(newdata))
  missing <- setdiff(setdiff(all.vars(nl), names(beta)), names(newdata))
  if (length(missing)) {
    .pylmer_stop("data", "newdata has no column ", .pylmer_quote(missing))
  }
  val <- eval(nl, c(as.list(newdata[cols]), pars), environment(f))
  unname(as.numeric(val))
}

.pylmer_nlmer_simulate <- function(m, nsim = 1L, seed = NULL) {
  if (!is.null(seed)) set.seed(seed)
  mu <- stats::fitted(m)
  s <- stats::sigma(m)
  out <- as.data.frame(lapply(seq_len(nsim), function(i) {
    mu + stats::rnorm(length(mu), sd = s)
  }))
  names(out) <- paste0("sim_", seq_len(nsim))
  out
}

.pylmer_nlmer_write_script <- function(name, dir, stem, formula, start = NULL,
                                       control = NULL) {
  data <- get(name, envir = .pylmer_store)
  f <- stats::as.formula(formula)
  start <- .pylmer_nlmer_start(start, f, data)
  ctrl <- .pylmer_nlmer_control_args(control)
  ctrl_call <- paste(deparse(as.call(c(list(as.name("nlmerControl")), ctrl))), collapse = " ")
  lines <- c(
    .pylmer_script_data(data, dir, stem),
    sprintf("start <- c(%s)", paste(sprintf("%s = %.17g", names(start), start),
                                    collapse = ", ")),
    sprintf("m <- nlmer(%s, data = data, start = start, control = %s)", formula, ctrl_call),
    "print(summary(m))"
  )
  path <- file.path(dir, paste0(stem, ".R"))
  writeLines(lines, path)
  path
}

# For the Python side: the names of the formula (the data columns among them cross to R)
# and the grouping columns of its random part.
.pylmer_nlmer_names <- function(formula) {
  f <- tryCatch(stats::as.formula(formula), error = function(e) {
    .pylmer_stop("formula", "cannot parse the formula '", formula, "': ", conditionMessage(e))
  })
  all.vars(f)
}

.pylmer_nlmer_groups <- function(formula) {
  f <- stats::as.formula(formula)
  unique(unlist(lapply(.pylmer_findbars(f[[3L]]), function(b) all.vars(b[[3L]]))))
}
