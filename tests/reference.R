# Reference values for tests/test_lmer.py, computed in plain R with lme4 (no pylmer code).
#
#   Rscript tests/reference.R tests/reference          (or: make reference)
#
# Writes <outdir>/<dataset>_<reml|ml>.json holding every accessor of LmerModel at full
# precision, plus the versions of R, lme4, lmerTest and the BLAS that produced them.  The
# tests run it on their own machine through tests/_refcache.py (lme4's optimum moves by
# ~1e-4 between CPUs and BLAS builds); tests/reference/ keeps one run as a record.

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = TRUE)
outdir <- if (length(args)) args[[1L]] else file.path("tests", "reference")
only <- if (length(args) > 1L) args[-1L] else NULL
dir.create(outdir, showWarnings = FALSE, recursive = TRUE)

cases <- list(
  sleepstudy = list(formula = Reaction ~ Days + (Days | Subject), groups = "Subject",
                    satterthwaite = TRUE),
  Dyestuff = list(formula = Yield ~ 1 + (1 | Batch), groups = "Batch", satterthwaite = TRUE),
  Penicillin = list(formula = diameter ~ 1 + (1 | plate) + (1 | sample),
                    groups = c("plate", "sample"), satterthwaite = TRUE),
  Pastes = list(formula = strength ~ 1 + (1 | batch / cask), groups = c("batch", "cask"),
                satterthwaite = TRUE),
  InstEval = list(formula = y ~ service + (1 | s) + (1 | d) + (1 | dept),
                  groups = c("s", "d", "dept"), satterthwaite = TRUE)
)

# A data frame as {index: row names, columns: {name: values}} (keeps column order).
frame_json <- function(df) {
  list(index = rownames(df), columns = lapply(as.list(df), function(x) {
    if (is.factor(x)) as.character(x) else x
  }), names = names(df))
}

named_json <- function(x) list(names = names(x), values = unname(x))

# The first three rows, with the grouping factors of the third row set to an unseen level.
make_newdata <- function(data, groups) {
  nd <- head(data, 3L)
  for (g in groups) {
    nd[[g]] <- as.character(nd[[g]])
    nd[[g]][3L] <- "new"
  }
  nd
}

reference <- function(name, case, reml) {
  env <- new.env()
  utils::data(list = name, package = "lme4", envir = env)
  data <- as.data.frame(get(name, envir = env))
  f <- case$formula
  m <- lmer(f, data = data, REML = reml)
  re <- ranef(m, condVar = TRUE)
  sds <- lapply(re, function(r) {
    pv <- attr(r, "postVar")
    out <- as.data.frame(lapply(seq_len(ncol(r)), function(k) sqrt(pv[k, k, ])))
    names(out) <- names(r)
    rownames(out) <- rownames(r)
    out
  })
  V <- as.matrix(vcov(m))
  beta <- fixef(m)
  se <- sqrt(diag(V))
  fixed <- data.frame(estimate = beta, std_error = se, t_value = beta / se,
                      row.names = names(beta), check.names = FALSE)
  if (case$satterthwaite) {
    tab <- summary(lmerTest::as_lmerModLmerTest(m))$coefficients
    fixed$df <- tab[, "df"]
    fixed$p_value <- tab[, "Pr(>|t|)"]
  }
  vc <- as.data.frame(VarCorr(m))
  names(vc) <- c("group", "var1", "var2", "variance", "sd_or_cor")
  ll <- logLik(m)
  nd <- make_newdata(data, case$groups)
  refitted <- if (nrow(data) < 1e4) refit(m, 2 * getME(m, "y"))
  list(
    meta = list(
      dataset = name, formula = paste(deparse(f), collapse = " "), reml = reml,
      R = paste(R.version$major, R.version$minor, sep = "."),
      lme4 = as.character(packageVersion("lme4")),
      lmerTest = as.character(packageVersion("lmerTest")),
      blas = utils::sessionInfo()$BLAS,
      groups = case$groups, created = format(Sys.time(), "%Y-%m-%dT%H:%M:%S")
    ),
    fixef = frame_json(fixed),
    ranef = lapply(lapply(re, as.data.frame), frame_json),
    ranef_sd = lapply(sds, frame_json),
    coef = lapply(coef(m), frame_json),
    varcorr = frame_json(vc),
    sigma = sigma(m),
    theta = named_json(getME(m, "theta")),
    loglik = as.numeric(ll),
    npar = attr(ll, "df"),
    aic = AIC(m),
    bic = BIC(m),
    deviance = suppressWarnings(deviance(m)),
    reml_criterion = REMLcrit(m),
    nobs = nobs(m),
    ngrps = named_json(ngrps(m)),
    vcov = list(names = rownames(V), values = unname(V)),
    fitted = unname(fitted(m)),
    residuals = unname(residuals(m)),
    is_singular = isSingular(m),
    messages = as.character(unlist(m@optinfo$conv$lme4$messages)),
    predict_new = unname(predict(m, newdata = nd, allow.new.levels = TRUE)),
    predict_new_fixed = unname(predict(m, newdata = nd, re.form = NA)),
    confint_wald = list(names = rownames(ci <- confint(m, method = "Wald")),
                        lower = unname(ci[, 1L]), upper = unname(ci[, 2L])),
    # lme4's refit() with a new response (twice the old one); small data sets only
    refit_double = if (!is.null(refitted)) {
      list(loglik = as.numeric(logLik(refitted)), theta = unname(getME(refitted, "theta")),
           estimate = unname(fixef(refitted)), sigma = sigma(refitted))
    }
  )
}

for (name in names(cases)) {
  if (!is.null(only) && !name %in% only) next
  for (reml in c(TRUE, FALSE)) {
    path <- file.path(outdir, sprintf("%s_%s.json", name, if (reml) "reml" else "ml"))
    value <- reference(name, cases[[name]], reml)
    write_json(value, path, digits = NA, auto_unbox = TRUE, na = "null", null = "null")
    message("wrote ", path)
  }
}
