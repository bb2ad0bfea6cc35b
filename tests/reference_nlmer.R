# Reference values for tests/test_nlmer.py, computed in plain R with lme4 (no pylmer code).
#
#   Rscript tests/reference_nlmer.R OUTDIR
#
# Writes OUTDIR/<case>.json with every accessor of NlmerModel at full precision; the tests
# run it on their own machine through tests/_refcache.py.  Cases: lme4's Orange example
# (SSlogis, given start) and Loblolly (SSasymp, start from the self-starting model's
# getInitial on the pooled data, as pylmer does when start is None).

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

frame_json <- function(df) {
  list(index = rownames(df), columns = lapply(as.list(df), function(x) {
    if (is.factor(x)) as.character(x) else x
  }), names = names(df))
}
named <- function(x) list(names = names(x), values = unname(x))

cases <- list(
  orange = list(
    data = "Orange", formula = circumference ~ SSlogis(age, Asym, xmid, scal) ~ Asym | Tree,
    start = c(Asym = 200, xmid = 725, scal = 350), group = "Tree", x = "age",
    pooled = circumference ~ SSlogis(age, Asym, xmid, scal)
  ),
  loblolly = list(
    data = "Loblolly", formula = height ~ SSasymp(age, Asym, R0, lrc) ~ Asym | Seed,
    start = NULL, group = "Seed", x = "age", pooled = height ~ SSasymp(age, Asym, R0, lrc)
  )
)

run_case <- function(name, case) {
  env <- new.env()
  utils::data(list = case$data, package = "datasets", envir = env)
  data <- as.data.frame(get(case$data, envir = env))
  start <- case$start
  pooled <- case$pooled
  if (is.null(start)) start <- stats::getInitial(pooled, data = data)
  f <- case$formula
  warnings <- character()
  m <- withCallingHandlers(
    # the formula as a value in the call: formula(m) re-reads it
    eval(bquote(lme4::nlmer(.(f), data = data, start = .(start)))),
    warning = function(w) {
      warnings <<- c(warnings, conditionMessage(w))
      invokeRestart("muffleWarning")
    }
  )
  V <- suppressWarnings(as.matrix(stats::vcov(m)))
  coefs <- suppressWarnings(summary(m)$coefficients)
  fixed <- data.frame(estimate = coefs[, 1L], std_error = coefs[, 2L], t_value = coefs[, 3L],
                      row.names = rownames(coefs))
  re <- lme4::ranef(m, condVar = TRUE)
  sds <- lapply(re, function(r) {
    pv <- attr(r, "postVar")
    out <- as.data.frame(lapply(seq_len(ncol(r)), function(k) sqrt(pv[k, k, ])))
    names(out) <- names(r)
    rownames(out) <- rownames(r)
    out
  })
  vc <- as.data.frame(lme4::VarCorr(m))
  names(vc) <- c("group", "var1", "var2", "variance", "sd_or_cor")
  ll <- stats::logLik(m)
  # predictions for new rows in plain R: the model at each group's coef() (unseen group:
  # the fixed effects)
  nd <- utils::head(data, 3L)
  nd[[case$group]] <- as.character(nd[[case$group]])
  nd[[case$group]][3L] <- "new"
  cf <- stats::coef(m)[[case$group]]
  beta <- lme4::fixef(m)
  pars <- t(vapply(nd[[case$group]], function(g) {
    if (g %in% rownames(cf)) unlist(cf[g, names(beta)]) else beta
  }, beta))
  nl <- case$formula[[2L]][[3L]]
  predict_new <- as.numeric(eval(nl, c(as.list(nd), as.data.frame(pars))))
  predict_fixed <- as.numeric(eval(nl, c(as.list(nd), as.list(beta))))
  list(
    start = named(start),
    fixef = frame_json(fixed),
    ranef = lapply(lapply(re, as.data.frame), frame_json),
    ranef_sd = lapply(sds, frame_json),
    coef = lapply(stats::coef(m), frame_json),
    varcorr = frame_json(vc),
    sigma = stats::sigma(m),
    theta = named(lme4::getME(m, "theta")),
    loglik = as.numeric(ll),
    npar = attr(ll, "df"),
    aic = stats::AIC(m),
    bic = stats::BIC(m),
    deviance = stats::deviance(m),
    nobs = stats::nobs(m),
    ngrps = named(lme4::ngrps(m)),
    vcov = list(names = rownames(V), values = unname(V)),
    fitted = unname(stats::fitted(m)),
    residuals = unname(stats::residuals(m)),
    is_singular = lme4::isSingular(m),
    warnings = warnings,
    predict_new = predict_new,
    predict_new_fixed = predict_fixed,
    summary_fixef = utils::capture.output(print(coefs))
  )
}

args <- commandArgs(trailingOnly = TRUE)
outdir <- if (length(args)) args[[1L]] else "reference_nlmer"
dir.create(outdir, showWarnings = FALSE, recursive = TRUE)
for (name in names(cases)) {
  value <- run_case(name, cases[[name]])
  jsonlite::write_json(value, file.path(outdir, paste0(name, ".json")), digits = NA,
                       auto_unbox = TRUE, na = "null", null = "null")
}
