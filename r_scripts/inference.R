# R side of pylmer.inference: lmerTest's anova / ranova / drop1 and coefficient tables
# (Satterthwaite or Kenward-Roger), emmeans, prediction intervals, performance's R2 and
# ICC, lme4's allFit, a broom.mixed-like tidy table, and the contrast codings of lmer().
# Sourced by pylmer/_r.py into the private environment; each helper takes a fitted merMod
# (lmerMod, lmerModLmerTest or glmerMod where it applies).

# ------------------------------------------------------------------ contrast codings

.pylmer_inf_codings <- c(treatment = "contr.treatment", sum = "contr.sum",
                         helmert = "contr.helmert", poly = "contr.poly")

# Check lmer()'s `contrasts` (column -> coding name) against the data and the formula and
# return the list lmer() takes (column -> "contr.*").
.pylmer_inf_contrasts <- function(contrasts, data, f) {
  if (!length(contrasts)) return(NULL)
  fixed <- all.vars(lme4::nobars(f)[[3L]])
  out <- list()
  for (v in names(contrasts)) {
    coding <- as.character(contrasts[[v]])
    if (!coding %in% names(.pylmer_inf_codings)) {
      .pylmer_stop("data", "contrasts['", v, "'] is '", coding, "'; use one of ",
                   .pylmer_quote(names(.pylmer_inf_codings)))
    }
    if (!v %in% fixed || !v %in% names(data)) {
      .pylmer_stop("data", "contrasts names column '", v, "', which the fixed part of the ",
                   "formula does not use (it uses ", .pylmer_quote(fixed), ")")
    }
    if (!is.factor(data[[v]]) && !is.character(data[[v]])) {
      .pylmer_stop("data", "contrasts names column '", v, "', which holds ",
                   class(data[[v]])[1L], " values; a coding applies to a factor ",
                   "(categorical or text column)")
    }
    out[[v]] <- unname(.pylmer_inf_codings[[coding]])
  }
  out
}

# The `, contrasts = list(...)` argument of a written script's lmer() call.
.pylmer_inf_script_contrasts <- function(contrasts) {
  if (!length(contrasts)) return("")
  codings <- vapply(contrasts, function(x) .pylmer_inf_codings[[as.character(x)]], "")
  paste0(", contrasts = ", paste(deparse(as.list(codings)), collapse = " "))
}

.pylmer_inf_model_contrasts <- function(m) {
  ctr <- attr(lme4::getME(m, "X"), "contrasts")
  if (is.null(ctr)) return(list())
  lapply(ctr, function(x) if (is.character(x)) x else "<matrix>")
}

# ------------------------------------------------------------------ lmerTest

# The lmerTest version of a fitted lmerMod (Satterthwaite's Hessian etc. computed once;
# pylmer caches the result).  With `own`, the Hessian of the deviance and the Jacobian of
# vcov(beta) come from pylmer's own computation (satterthwaite.R: the numbers of lmerTest's
# definition, with far fewer deviance evaluations, and the same df as m.fixef); else from
# lmerTest's as_lmerModLmerTest(), which looks the data up in the fit's environment.
.pylmer_inf_lmertest <- function(m, own = TRUE) {
  if (inherits(m, "lmerModLmerTest")) return(m)
  if (!inherits(m, "lmerMod")) stop("lmerTest applies to linear mixed models (lmer) only")
  if (!requireNamespace("lmerTest", quietly = TRUE)) {
    stop("the R package lmerTest is not installed (Debian: r-cran-lmertest)")
  }
  if (own && exists(".pylmer_satt_parts", mode = "function")) {
    parts <- .pylmer_satt_parts(m)
    for (note in parts$notes) warning(note, call. = FALSE)
    return(.pylmer_satt_lmertest(m, parts))
  }
  mt <- eval(quote(lmerTest::as_lmerModLmerTest(model)), list(model = m),
             enclos = environment(stats::formula(m)))
  if (!inherits(mt, "lmerModLmerTest")) {
    stop("lmerTest could not compute the Satterthwaite quantities for this model")
  }
  mt
}

.pylmer_inf_ddf <- function(ddf) {
  switch(ddf, satterthwaite = "Satterthwaite", "kenward-roger" = "Kenward-Roger",
         lme4 = "lme4", stop("unknown ddf '", ddf, "'"))
}

.pylmer_inf_table <- function(tab) {
  out <- as.data.frame(tab, optional = TRUE)
  attr(out, "heading") <- NULL
  class(out) <- "data.frame"
  list(table = out, heading = paste(trimws(attr(tab, "heading")), collapse = "\n"))
}

.pylmer_inf_anova <- function(mt, type = 3L, ddf = "satterthwaite") {
  tab <- stats::anova(mt, type = type, ddf = .pylmer_inf_ddf(ddf))
  .pylmer_inf_table(tab)
}

.pylmer_inf_ranova <- function(mt, reduce_terms = TRUE) {
  env <- environment(stats::formula(mt))
  tab <- eval(quote(lmerTest::ranova(model, reduce.terms = reduce)),
              list(model = mt, reduce = reduce_terms), enclos = env)
  attr(tab, "formulae") <- NULL
  .pylmer_inf_table(tab)
}

.pylmer_inf_drop1 <- function(mt, ddf = "satterthwaite") {
  tab <- stats::drop1(mt, ddf = .pylmer_inf_ddf(ddf))
  attr(tab, "hypotheses") <- NULL
  attr(tab, "ddf") <- NULL
  .pylmer_inf_table(tab)
}

.pylmer_inf_coef_table <- function(mt, ddf = "satterthwaite") {
  tab <- stats::coef(summary(mt, ddf = .pylmer_inf_ddf(ddf)))
  out <- data.frame(estimate = unname(tab[, 1L]), std_error = unname(tab[, 2L]),
                    row.names = rownames(tab))
  if (ncol(tab) == 5L) {
    out$df <- unname(tab[, 3L])
    out$t_value <- unname(tab[, 4L])
    out$p_value <- unname(tab[, 5L])
  } else {
    out$t_value <- unname(tab[, 3L])
  }
  out
}

# ------------------------------------------------------------------ emmeans

.pylmer_inf_emm_frame <- function(s, kind) {
  est <- attr(s, "estName")
  cl <- attr(s, "clNames")
  df <- as.data.frame(s)
  class(df) <- "data.frame"
  attr(df, "estName") <- NULL
  attr(df, "clNames") <- NULL
  attr(df, "pri.vars") <- NULL
  attr(df, "by.vars") <- NULL
  attr(df, "mesg") <- NULL
  nm <- names(df)
  nm[nm == est] <- "estimate"
  nm[nm == "SE"] <- "std_error"
  if (length(cl) == 2L) {
    nm[nm == cl[1L]] <- "conf_low"
    nm[nm == cl[2L]] <- "conf_high"
  }
  nm[nm %in% c("t.ratio", "z.ratio")] <- "statistic"
  nm[nm == "p.value"] <- "p_value"
  names(df) <- nm
  for (v in names(df)) if (is.factor(df[[v]])) df[[v]] <- as.character(df[[v]])
  list(table = df, estimate_name = est, messages = as.character(attr(s, "mesg")))
}

# emmeans(m, specs, by, at) and, when `contrast` is given, contrast() of those means.
# `contrast` is a method name ("pairwise", "trt.vs.ctrl", ...) or a named list of weight
# vectors; `ddf` NULL keeps emmeans' own choice (and its limits on the data size).
.pylmer_inf_emmeans <- function(m, specs, by = NULL, at = NULL, contrast = NULL,
                                adjust = NULL, type = "response", level = 0.95, ddf = NULL,
                                ref = NULL) {
  if (!requireNamespace("emmeans", quietly = TRUE)) {
    stop("the R package emmeans is not installed (Debian: r-cran-emmeans)")
  }
  fvars <- all.vars(lme4::nobars(stats::formula(m))[[3L]])
  bad <- setdiff(c(specs, by), fvars)
  if (length(bad)) {
    .pylmer_stop("data", "emmeans: ", .pylmer_quote(bad), " is not a variable of the fixed ",
                 "part of the model (", .pylmer_quote(fvars), ")")
  }
  # the model goes in as a symbol: emmeans keeps its call, and a call holding the
  # model object itself costs a deparse of the whole model (20 ms on InstEval)
  args <- list(quote(model), specs = specs, by = by, type = type, level = level)
  if (!is.null(at)) args$at <- at
  if (!is.null(ddf) && lme4::isLMM(m)) {
    args$lmer.df <- ddf
    args$lmerTest.limit <- Inf
    args$pbkrtest.limit <- Inf
  }
  env <- new.env(parent = environment(stats::formula(m)))
  env$model <- m
  # pylmer offers no `submodel`: skip the QR of the model matrix kept for it (10 ms on
  # InstEval, each call)
  submodel <- emmeans::get_emm_option("enable.submodel")
  emmeans::emm_options(enable.submodel = FALSE)
  on.exit(emmeans::emm_options(enable.submodel = submodel), add = TRUE)
  emm <- eval(as.call(c(list(quote(emmeans::emmeans)), args)), env)
  means <- .pylmer_inf_emm_frame(summary(emm, level = level), "means")
  out <- list(means = means$table, estimate_name = means$estimate_name,
              messages = means$messages, contrasts = NULL)
  if (!is.null(contrast)) {
    cargs <- list(emm, method = contrast)
    if (!is.null(adjust)) cargs$adjust <- adjust
    if (!is.null(ref)) cargs$ref <- ref
    con <- do.call(emmeans::contrast, cargs)
    cs <- .pylmer_inf_emm_frame(summary(con, infer = c(TRUE, TRUE), level = level),
                                "contrasts")
    out$contrasts <- cs$table
    out$contrast_estimate_name <- cs$estimate_name
    out$contrast_messages <- cs$messages
    adj <- con@misc$adjust
    out$adjust <- if (is.null(adj)) "none" else as.character(adj[1L])
  }
  out
}

# ------------------------------------------------------------------ prediction intervals

# The random-effects terms in lme4's internal order, each with its formula bar, grouping
# factor name, column names, offset in b and the levels of its grouping factor.
.pylmer_inf_re_terms <- function(m) {
  cnms <- lme4::getME(m, "cnms")
  flist <- lme4::getME(m, "flist")
  asgn <- attr(flist, "assign")
  gp <- lme4::getME(m, "Gp")
  bars <- lme4::findbars(stats::formula(m))
  used <- rep(FALSE, length(bars))
  frame <- m@frame
  lapply(seq_along(cnms), function(k) {
    group <- names(flist)[asgn[k]]
    pick <- NA_integer_
    for (i in seq_along(bars)) {
      if (used[i]) next
      label <- paste(deparse(bars[[i]][[3L]]), collapse = " ")
      if (label != group) next
      mm <- .pylmer_inf_term_matrix(bars[[i]], frame[seq_len(min(nrow(frame), 50L)), ,
                                                      drop = FALSE], frame)
      if (identical(colnames(mm), cnms[[k]])) {
        pick <- i
        break
      }
    }
    if (is.na(pick)) {
      stop("cannot match the random-effects term ", k, " (", group, ": ",
           paste(cnms[[k]], collapse = ", "), ") to the formula; intervals are not ",
           "available for this model")
    }
    used[pick] <<- TRUE
    list(bar = bars[[pick]], group = group, cnms = cnms[[k]], offset = gp[k],
         levels = levels(flist[[asgn[k]]]))
  })
}

.pylmer_inf_xlev <- function(frame, vars) {
  vars <- intersect(vars, names(frame))
  xlev <- lapply(frame[vars], function(x) if (is.factor(x)) levels(x) else NULL)
  xlev[!vapply(xlev, is.null, TRUE)]
}

# The model matrix of a random term's left-hand side on `data` (rows kept as they are).
.pylmer_inf_term_matrix <- function(bar, data, frame) {
  f <- eval(substitute(~foo, list(foo = bar[[2L]])))
  environment(f) <- globalenv()
  mf <- stats::model.frame(f, data, na.action = stats::na.pass,
                           xlev = .pylmer_inf_xlev(frame, all.vars(f)))
  stats::model.matrix(f, mf)
}

.pylmer_inf_fixed_matrix <- function(m, data) {
  tt <- stats::delete.response(stats::terms(m, fixed.only = TRUE))
  X0 <- lme4::getME(m, "X")
  mf <- stats::model.frame(tt, data, na.action = stats::na.pass,
                           xlev = .pylmer_inf_xlev(m@frame, all.vars(tt)))
  X <- stats::model.matrix(tt, mf, contrasts.arg = attr(X0, "contrasts"))
  X[, colnames(X0), drop = FALSE]
}

# Variance / sigma^2 of x'beta + z'b - (true value) given y at the variance parameters
# of the model's current decomposition (pp), for the rows of A = [A_b, X]:
# |M^-1 (P Lambda' a_b; a_x)|^2, where M M' is the precision of (u, beta) / sigma^2 that
# lme4 factors as [[L, 0], [RZX', RX']].
.pylmer_inf_joint_w <- function(m, Ab, X) {
  L <- lme4::getME(m, "L")
  Lt <- lme4::getME(m, "Lambdat")
  RZX <- lme4::getME(m, "RZX")
  RX <- lme4::getME(m, "RX")
  n <- nrow(X)
  out <- numeric(n)
  chunk <- 2000L
  for (start in seq(1L, n, by = chunk)) {
    rows <- start:min(n, start + chunk - 1L)
    Au <- Lt %*% Matrix::t(Ab[rows, , drop = FALSE])   # q x rows: Lambda' a_b
    W1 <- Matrix::solve(L, Matrix::solve(L, Au, system = "P"), system = "L")
    W1 <- as.matrix(W1)
    R2 <- t(X[rows, , drop = FALSE]) - as.matrix(Matrix::crossprod(RZX, W1))
    W2 <- forwardsolve(t(RX), R2)
    out[rows] <- colSums(W1^2) + colSums(W2^2)
  }
  out
}

# z' Sigma_k z / sigma^2 of the rows whose group of term k is new (or all rows at the
# population level), from the current Lambda: Sigma_k / sigma^2 = T_k T_k'.
.pylmer_inf_new_w <- function(m, terms_k, news, n) {
  Lt <- lme4::getME(m, "Lambdat")
  out <- numeric(n)
  for (piece in news) {
    tk <- terms_k[[piece$k]]
    idx <- tk$offset + seq_along(tk$cnms)
    Tk <- t(as.matrix(Lt[idx, idx, drop = FALSE]))
    S <- tcrossprod(Tk)
    out[piece$rows] <- out[piece$rows] + rowSums((piece$mm %*% S) * piece$mm)
  }
  out
}

# Satterthwaite df of each predictive variance v = sigma^2 w(theta): 2 v^2 / (g' A g) with
# g = dv / d(theta, sigma) (theta by central differences of the decomposition, sigma in
# closed form) and A the asymptotic covariance of (theta, sigma) of lmerTest's object
# `mt` (for x'beta alone this is lmerTest's df of the contrast x).
.pylmer_inf_pred_df <- function(m, mt, w_at, w0) {
  theta <- as.numeric(m@theta) + 0
  sigma <- stats::sigma(m)
  devfun <- lme4::getME(m, "devfun")
  on.exit(devfun(theta + 0), add = TRUE)  # restore the decomposition of the fit
  k <- length(theta)
  h <- 3e-3 * pmax(abs(theta), 1e-2)
  G <- matrix(0, length(w0), k + 1L)
  for (j in seq_len(k)) {
    step <- replace(numeric(k), j, h[j])
    devfun(theta + step)
    wp <- w_at()
    devfun(theta - step)
    wm <- w_at()
    G[, j] <- sigma^2 * (wp - wm) / (2 * h[j])
  }
  G[, k + 1L] <- 2 * sigma * w0
  A <- mt@vcov_varpar
  v <- sigma^2 * w0
  2 * v^2 / rowSums((G %*% A) * G)
}

.pylmer_inf_predict <- function(m, name = NULL, include_random = TRUE,
                                allow_new_levels = TRUE, interval = "confidence",
                                level = 0.95, ddf = "asymptotic", mt = NULL) {
  if (!lme4::isLMM(m)) stop("prediction intervals are implemented for lmer models only")
  re_form <- if (include_random) NULL else NA
  terms_k <- .pylmer_inf_re_terms(m)
  q <- nrow(lme4::getME(m, "Lambdat"))
  news <- list()
  if (is.null(name)) {
    est <- unname(stats::predict(m, re.form = re_form))
    X <- lme4::getME(m, "X")
    Ab <- if (include_random) lme4::getME(m, "Z") else Matrix::Matrix(0, nrow(X), q, sparse = TRUE)
    data <- m@frame
    known_data <- FALSE
  } else {
    data <- get(name, envir = .pylmer_store)
    .pylmer_lmer_check_columns(m, data, include_random)
    if (nrow(data) == 0L) {
      return(data.frame(estimate = numeric(), std_error = numeric(), df = numeric(),
                        lower = numeric(), upper = numeric()))
    }
    .pylmer_lmer_check_levels(m, data, allow_new_levels)
    est <- unname(stats::predict(m, newdata = data, re.form = re_form,
                                 allow.new.levels = allow_new_levels,
                                 na.action = stats::na.pass))
    known_data <- TRUE
  }
  n <- length(est)
  ok <- !is.na(est)
  if (known_data) {
    sub <- data[ok, , drop = FALSE]
    X <- .pylmer_inf_fixed_matrix(m, sub)
    i_all <- integer()
    j_all <- integer()
    x_all <- numeric()
    env <- environment(stats::formula(m))
    for (k in seq_along(terms_k)) {
      tk <- terms_k[[k]]
      mm <- .pylmer_inf_term_matrix(tk$bar, sub, m@frame)
      g <- as.character(eval(tk$bar[[3L]], sub, env))
      j <- if (include_random) match(g, tk$levels) else rep(NA_integer_, length(g))
      known <- !is.na(j)
      nc <- length(tk$cnms)
      for (c in seq_len(nc)) {
        i_all <- c(i_all, which(known))
        j_all <- c(j_all, tk$offset + (j[known] - 1L) * nc + c)
        x_all <- c(x_all, mm[known, c])
      }
      # an unseen group (or the population level, for a prediction): its effect is a draw
      # from the random-effects distribution
      new <- !known
      if (any(new) && (include_random || interval == "prediction")) {
        news[[length(news) + 1L]] <- list(k = k, rows = which(new),
                                          mm = mm[new, , drop = FALSE])
      }
    }
    Ab <- Matrix::sparseMatrix(i = i_all, j = j_all, x = x_all, dims = c(nrow(sub), q))
  } else if (!include_random && interval == "prediction") {
    Z <- lme4::getME(m, "Z")
    for (tk in seq_along(terms_k)) {
      nc <- length(terms_k[[tk]]$cnms)
      cols <- terms_k[[tk]]$offset + seq_len(nc * length(terms_k[[tk]]$levels))
      # per-row design of this term: its columns in Z are level-major (nc per level),
      # one level per row
      mm <- matrix(0, nrow(X), nc)
      idx <- Matrix::summary(methods::as(Z[, cols, drop = FALSE], "CsparseMatrix"))
      col_in_term <- ((idx$j - 1L) %% nc) + 1L
      for (c in seq_len(nc)) {
        sel <- col_in_term == c
        mm[idx$i[sel], c] <- idx$x[sel]
      }
      news[[length(news) + 1L]] <- list(k = tk, rows = seq_len(nrow(X)), mm = mm)
    }
  }
  w_at <- function() {
    w <- .pylmer_inf_joint_w(m, Ab, X) + .pylmer_inf_new_w(m, terms_k, news, nrow(X))
    if (interval == "prediction") w + 1 else w
  }
  w0 <- w_at()
  se <- df <- rep(NA_real_, n)
  se[ok] <- stats::sigma(m) * sqrt(w0)
  df[ok] <- if (identical(ddf, "satterthwaite")) .pylmer_inf_pred_df(m, mt, w_at, w0) else Inf
  q <- stats::qt((1 + level) / 2, df)
  data.frame(estimate = est, std_error = se, df = df, lower = est - q * se,
             upper = est + q * se)
}

# ------------------------------------------------------------------ R2, ICC

.pylmer_inf_r2 <- function(m) {
  if (!requireNamespace("performance", quietly = TRUE)) {
    stop("the R package performance is not installed (Debian: r-cran-performance)")
  }
  r <- performance::r2_nakagawa(m)
  c(marginal = unname(r$R2_marginal), conditional = unname(r$R2_conditional))
}

.pylmer_inf_icc <- function(m, by_group = FALSE) {
  if (!requireNamespace("performance", quietly = TRUE)) {
    stop("the R package performance is not installed (Debian: r-cran-performance)")
  }
  r <- performance::icc(m, by_group = by_group)
  if (is.null(r)) stop("performance::icc() could not compute the ICC for this model")
  if (by_group) {
    out <- as.data.frame(r)
    class(out) <- "data.frame"
    names(out) <- c("group", "icc")
    return(out)
  }
  c(adjusted = unname(r$ICC_adjusted), unadjusted = unname(r$ICC_unadjusted))
}

# ------------------------------------------------------------------ allFit

# allFit() rebuilds the control from the model's call, which it expects to be a call
# (lmerControl(...)); pylmer's fits hold the control object itself, so turn it back into
# a call with the same settings.
.pylmer_inf_control_call <- function(m) {
  ctrl <- stats::getCall(m)$control
  if (is.null(ctrl) || is.call(ctrl)) return(m)
  fun <- if (lme4::isGLMM(m)) "glmerControl" else "lmerControl"
  args <- c(ctrl$checkControl, ctrl$checkConv,
            ctrl[setdiff(names(ctrl), c("checkControl", "checkConv", "optimizer"))])
  args <- args[intersect(names(args), names(formals(getExportedValue("lme4", fun))))]
  args <- args[!vapply(args, is.null, TRUE)]
  m@call$control <- as.call(c(list(call("::", quote(lme4), as.name(fun))), args))
  m
}

# allFit's table of optimizers (those whose R package is installed) and their fit names.
.pylmer_inf_allfit_table <- function(m) {
  for (p in c("dfoptim", "optimx")) suppressMessages(requireNamespace(p, quietly = TRUE))
  tab <- lme4::allFit(m, show.meth.tab = TRUE)
  rownames(tab) <- gsub("\\.$", "", paste(tab[, "optimizer"], tab[, "method"], sep = "."))
  tab
}

.pylmer_inf_allfit_names <- function(m) rownames(.pylmer_inf_allfit_table(m))

# allFit() with every optimizer, or those named in `which`; one row per optimizer.
.pylmer_inf_allfit <- function(m, which = NULL) {
  env <- environment(stats::formula(m))
  tab <- .pylmer_inf_allfit_table(m)
  if (!is.null(which)) tab <- tab[rownames(tab) %in% which, , drop = FALSE]
  rownames(tab) <- NULL
  af <- eval(quote(lme4::allFit(model, meth.tab = tab, verbose = FALSE)),
             list(model = .pylmer_inf_control_call(m), tab = tab), enclos = env)
  ok <- !vapply(af, inherits, TRUE, what = "error")
  fits <- af[ok]
  rows <- lapply(names(af), function(nm) {
    fit <- af[[nm]]
    if (inherits(fit, "error")) {
      return(list(optimizer = nm, ok = FALSE, loglik = NA_real_, time = NA_real_,
                  warnings = conditionMessage(fit), fixef = NULL, sdcor = NULL))
    }
    conv <- fit@optinfo$conv$lme4$messages
    w <- c(as.character(unlist(fit@optinfo$warnings)), as.character(unlist(conv)))
    vc <- as.data.frame(lme4::VarCorr(fit), order = "lower.tri")
    vname <- ifelse(is.na(vc$var1), paste0(vc$grp, ".sd"),
                    ifelse(is.na(vc$var2), paste0(vc$grp, ".sd_", vc$var1),
                           paste0(vc$grp, ".cor_", vc$var1, ".", vc$var2)))
    vname[vc$grp == "Residual"] <- "sigma"
    list(optimizer = nm, ok = TRUE, loglik = as.numeric(stats::logLik(fit)),
         time = unname(attr(fit, "time")[["elapsed"]]),
         warnings = paste(unique(w), collapse = "; "),
         fixef = lme4::fixef(fit), sdcor = stats::setNames(vc$sdcor, vname))
  })
  template <- rows[[which(ok)[1L]]]
  fx <- names(template$fixef)
  vn <- names(template$sdcor)
  out <- data.frame(
    optimizer = vapply(rows, `[[`, "", "optimizer"),
    ok = vapply(rows, `[[`, TRUE, "ok"),
    loglik = vapply(rows, `[[`, 0, "loglik"),
    time = vapply(rows, function(r) if (is.null(r$time)) NA_real_ else r$time, 0),
    warnings = vapply(rows, `[[`, "", "warnings"),
    stringsAsFactors = FALSE
  )
  for (v in fx) out[[v]] <- vapply(rows, function(r) if (is.null(r$fixef)) NA_real_ else
    unname(r$fixef[v]), 0)
  for (v in vn) out[[v]] <- vapply(rows, function(r) if (is.null(r$sdcor)) NA_real_ else
    unname(r$sdcor[v]), 0)
  out
}

# ------------------------------------------------------------------ tidy

.pylmer_inf_ran_pars_name <- function(var1, var2, grp) {
  ifelse(grp == "Residual", "sd__Observation",
         ifelse(is.na(var2), paste0("sd__", var1), paste0("cor__", var1, ".", var2)))
}

# One table in broom.mixed's layout (snake_case names).  `mt` is the lmerTest version of an
# lmer fit (NULL for glmer or without lmerTest); fixed-effect intervals are Wald (normal
# quantiles, as confint(method = "Wald")), random parameters' intervals by `conf_method`.
.pylmer_inf_tidy <- function(m, mt = NULL, effects = c("fixed", "ran_pars"),
                             conf_int = FALSE, conf_level = 0.95, conf_method = "Wald",
                             ddf = "satterthwaite") {
  parts <- list()
  z <- stats::qnorm((1 + conf_level) / 2)
  if ("fixed" %in% effects) {
    tab <- if (!is.null(mt)) stats::coef(summary(mt, ddf = .pylmer_inf_ddf(ddf)))
           else stats::coef(summary(m))
    fx <- data.frame(effect = "fixed", group = NA_character_, level = NA_character_,
                     term = rownames(tab), estimate = unname(tab[, 1L]),
                     std_error = unname(tab[, 2L]), stringsAsFactors = FALSE)
    if (ncol(tab) == 5L) {
      fx$statistic <- unname(tab[, 4L])
      fx$df <- unname(tab[, 3L])
      fx$p_value <- unname(tab[, 5L])
    } else {
      fx$statistic <- unname(tab[, 3L])
      fx$df <- NA_real_
      fx$p_value <- if (ncol(tab) >= 4L) unname(tab[, 4L]) else NA_real_
    }
    if (conf_int) {
      if (conf_method == "Wald") {
        # t quantiles with the Satterthwaite / Kenward-Roger df where there are df (as
        # broom.mixed), normal quantiles otherwise
        q <- ifelse(is.na(fx$df), z, stats::qt((1 + conf_level) / 2, fx$df))
        fx$conf_low <- fx$estimate - q * fx$std_error
        fx$conf_high <- fx$estimate + q * fx$std_error
      } else {
        ci <- stats::confint(m, parm = "beta_", method = conf_method, level = conf_level,
                             quiet = TRUE)
        fx$conf_low <- unname(ci[fx$term, 1L])
        fx$conf_high <- unname(ci[fx$term, 2L])
      }
    }
    parts$fixed <- fx
  }
  if ("ran_pars" %in% effects) {
    vc <- as.data.frame(lme4::VarCorr(m), order = "lower.tri")
    rp <- data.frame(effect = "ran_pars", group = vc$grp, level = NA_character_,
                     term = .pylmer_inf_ran_pars_name(vc$var1, vc$var2, vc$grp),
                     estimate = vc$sdcor, std_error = NA_real_, statistic = NA_real_,
                     df = NA_real_, p_value = NA_real_, stringsAsFactors = FALSE)
    if (conf_int) {
      if (conf_method == "Wald") {
        rp$conf_low <- NA_real_
        rp$conf_high <- NA_real_
      } else {
        ci <- stats::confint(m, parm = "theta_", method = conf_method, level = conf_level,
                             quiet = TRUE)
        rp$conf_low <- unname(ci[, 1L])
        rp$conf_high <- unname(ci[, 2L])
      }
    }
    parts$ran_pars <- rp
  }
  if ("ran_vals" %in% effects) {
    rv <- as.data.frame(lme4::ranef(m, condVar = TRUE), stringsAsFactors = FALSE)
    out <- data.frame(effect = "ran_vals", group = as.character(rv$grpvar),
                      level = as.character(rv$grp), term = as.character(rv$term),
                      estimate = rv$condval, std_error = rv$condsd, statistic = NA_real_,
                      df = NA_real_, p_value = NA_real_, stringsAsFactors = FALSE)
    if (conf_int) {
      out$conf_low <- out$estimate - z * out$std_error
      out$conf_high <- out$estimate + z * out$std_error
    }
    parts$ran_vals <- out
  }
  res <- do.call(rbind, unname(parts[intersect(effects, names(parts))]))
  rownames(res) <- NULL
  res
}
