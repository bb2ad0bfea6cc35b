# Reference values for tests/test_glmer.py, computed in plain R with lme4 (no pylmer code).
#
#   Rscript tests/reference_glmer.R OUTDIR [CASE ...]
#
# Writes OUTDIR/<case>.json holding every accessor of GlmerModel at full precision (and,
# for the simulated cases, the data).  The tests run it on their own machine through
# tests/_refcache.py.  Everything runs inside .refglmer_main(), called only when Rscript
# runs this file.

.refglmer_cases <- function() {
  set.seed(20240601)
  n_g <- 30L
  g <- factor(sprintf("g%02d", rep(seq_len(n_g), each = 12L)))
  x <- round(stats::runif(length(g), -1, 1), 4)
  u <- stats::rnorm(n_g, sd = 0.4)[as.integer(g)]
  mu <- exp(1 + 0.5 * x + u)
  y <- round(stats::rgamma(length(g), shape = 4, rate = 4 / mu), 6)
  gamma_data <- data.frame(y = y, x = x, g = g)
  # inverse Gaussian draws (Michael, Schucany & Haas 1976), mean mu, shape 20
  nu <- stats::rnorm(length(g))^2
  w <- mu + mu^2 * nu / 40 - mu / 40 * sqrt(80 * mu * nu + mu^2 * nu^2)
  ig <- ifelse(stats::runif(length(g)) <= mu / (mu + w), w, mu^2 / w)
  ig_data <- data.frame(y = round(ig, 6), x = x, g = g)
  list(
    cbpp = list(data = "cbpp", formula = cbind(incidence, size - incidence) ~ period + (1 | herd),
                family = quote(binomial), groups = "herd", nAGQ = 1L, extras = TRUE),
    cbpp_agq5 = list(data = "cbpp",
                     formula = cbind(incidence, size - incidence) ~ period + (1 | herd),
                     family = quote(binomial), groups = "herd", nAGQ = 5L),
    cbpp_prop = list(data = "cbpp", formula = incidence / size ~ period + (1 | herd),
                     family = quote(binomial), groups = "herd", nAGQ = 1L, weights = "size"),
    grouseticks_poisson = list(data = "grouseticks",
                               formula = TICKS ~ YEAR + HEIGHT + (1 | BROOD) + (1 | LOCATION),
                               family = quote(poisson), groups = c("BROOD", "LOCATION"),
                               nAGQ = 1L),
    grouseticks_nb = list(data = "grouseticks",
                          formula = TICKS ~ YEAR + HEIGHT + (1 | BROOD) + (1 | LOCATION),
                          family = "negative_binomial", groups = c("BROOD", "LOCATION"),
                          nAGQ = 1L),
    verbagg = list(data = "VerbAgg",
                   formula = r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item),
                   family = quote(binomial), groups = c("id", "item"), nAGQ = 1L),
    gamma_sim = list(data = gamma_data, formula = y ~ x + (1 | g),
                     family = quote(Gamma(link = "log")), groups = "g", nAGQ = 1L),
    invgauss_sim = list(data = ig_data, formula = y ~ x + (1 | g),
                        family = quote(inverse.gaussian(link = "log")), groups = "g",
                        nAGQ = 1L)
  )
}

# A data frame as {index: row names, columns: {name: values}} (keeps column order).
.refglmer_frame <- function(df) {
  list(index = rownames(df), columns = lapply(as.list(df), function(x) {
    if (is.factor(x)) as.character(x) else x
  }), names = names(df))
}

.refglmer_named <- function(x) list(names = names(x), values = unname(x))

.refglmer_newdata <- function(data, groups) {
  nd <- utils::head(data, 3L)
  for (g in groups) {
    nd[[g]] <- as.character(nd[[g]])
    nd[[g]][3L] <- "new"
  }
  nd
}

.refglmer_fit <- function(case, data) {
  if (identical(case$family, "negative_binomial")) {
    return(lme4::glmer.nb(case$formula, data = data, nAGQ = case$nAGQ))
  }
  fam <- eval(case$family)
  if (is.null(case$weights)) {
    lme4::glmer(case$formula, data = data, family = fam, nAGQ = case$nAGQ)
  } else {
    data$.w <- data[[case$weights]]
    lme4::glmer(case$formula, data = data, family = fam, nAGQ = case$nAGQ, weights = .w)
  }
}

.refglmer_case <- function(name, case) {
  if (is.character(case$data)) {
    env <- new.env()
    utils::data(list = case$data, package = "lme4", envir = env)
    data <- as.data.frame(get(case$data, envir = env))
  } else {
    data <- case$data
  }
  warnings <- character()
  m <- withCallingHandlers(
    .refglmer_fit(case, data),
    warning = function(w) {
      warnings <<- c(warnings, conditionMessage(w))
      invokeRestart("muffleWarning")
    },
    message = function(m) invokeRestart("muffleMessage")
  )
  re <- lme4::ranef(m, condVar = TRUE)
  sds <- lapply(re, function(r) {
    pv <- attr(r, "postVar")
    out <- as.data.frame(lapply(seq_len(ncol(r)), function(k) sqrt(pv[k, k, ])))
    names(out) <- names(r)
    rownames(out) <- rownames(r)
    out
  })
  coefs <- summary(m)$coefficients
  fixed <- data.frame(estimate = coefs[, 1L], std_error = coefs[, 2L], z_value = coefs[, 3L],
                      p_value = coefs[, 4L], row.names = rownames(coefs))
  V <- as.matrix(stats::vcov(m))
  vc <- as.data.frame(lme4::VarCorr(m))
  names(vc) <- c("group", "var1", "var2", "variance", "sd_or_cor")
  ll <- stats::logLik(m)
  nd <- .refglmer_newdata(data, case$groups)
  fam <- stats::family(m)
  out <- list(
    meta = list(
      case = name, formula = paste(deparse(case$formula), collapse = " "),
      family = fam$family, link = fam$link, nagq = case$nAGQ, groups = case$groups,
      weights = case$weights,
      R = paste(R.version$major, R.version$minor, sep = "."),
      lme4 = as.character(utils::packageVersion("lme4")),
      blas = utils::sessionInfo()$BLAS, created = format(Sys.time(), "%Y-%m-%dT%H:%M:%S")
    ),
    data = if (!is.character(case$data)) .refglmer_frame(data),
    fixef = .refglmer_frame(fixed),
    ranef = lapply(lapply(re, as.data.frame), .refglmer_frame),
    ranef_sd = lapply(sds, .refglmer_frame),
    coef = lapply(stats::coef(m), .refglmer_frame),
    varcorr = .refglmer_frame(vc),
    sigma = stats::sigma(m),
    theta = .refglmer_named(lme4::getME(m, "theta")),
    nb_theta = if (startsWith(fam$family, "Negative")) lme4::getME(m, "glmer.nb.theta"),
    loglik = as.numeric(ll),
    npar = attr(ll, "df"),
    aic = stats::AIC(m),
    bic = stats::BIC(m),
    deviance = stats::deviance(m),
    nobs = stats::nobs(m),
    ngrps = .refglmer_named(lme4::ngrps(m)),
    vcov = list(names = rownames(V), values = unname(V)),
    fitted = unname(stats::fitted(m)),
    residuals = unname(stats::residuals(m)),
    is_singular = lme4::isSingular(m),
    messages = as.character(unlist(m@optinfo$conv$lme4$messages)),
    warnings = warnings,
    predict_new = unname(stats::predict(m, newdata = nd, type = "response",
                                        allow.new.levels = TRUE)),
    predict_new_link = unname(stats::predict(m, newdata = nd, allow.new.levels = TRUE)),
    predict_new_fixed = unname(stats::predict(m, newdata = nd, re.form = NA)),
    predict_link_fixed = unname(stats::predict(m, re.form = NA)),
    confint_wald = list(names = rownames(ci <- stats::confint(m, method = "Wald")),
                        lower = unname(ci[, 1L]), upper = unname(ci[, 2L])),
    simulate = unname(as.list(.refglmer_sims(m)))
  )
  if (isTRUE(case$extras)) {
    # refit with successes and failures swapped; profile and bootstrap intervals; LRT
    swapped <- lme4::refit(m, newresp = cbind(data$size - data$incidence, data$incidence))
    prof <- stats::confint(m, method = "profile")
    boot <- stats::confint(m, method = "boot", nsim = 10L, seed = 42L, quiet = TRUE)
    m0 <- lme4::glmer(cbind(incidence, size - incidence) ~ 1 + (1 | herd), data = data,
                      family = binomial)
    tab <- stats::anova(m0, m)
    out$refit_swapped <- list(loglik = as.numeric(stats::logLik(swapped)),
                              theta = unname(lme4::getME(swapped, "theta")),
                              estimate = unname(lme4::fixef(swapped)))
    out$confint_profile <- list(names = rownames(prof), lower = unname(prof[, 1L]),
                                upper = unname(prof[, 2L]))
    out$confint_boot <- list(names = rownames(boot), lower = unname(boot[, 1L]),
                             upper = unname(boot[, 2L]))
    out$anova <- list(columns = names(tab), chisq = tab$Chisq[2L], df = tab$Df[2L],
                      p = tab[["Pr(>Chisq)"]][2L], loglik = tab$logLik)
  }
  out
}

# Two simulated responses with seed 42, as plain numbers (successes for cbind()).
.refglmer_sims <- function(m) {
  sims <- stats::simulate(m, nsim = 2L, seed = 42L)
  lapply(sims, function(s) {
    if (is.matrix(s)) s[, 1L] else if (is.factor(s)) as.numeric(s != levels(s)[1L]) else s
  })
}

.refglmer_main <- function(args) {
  suppressPackageStartupMessages({
    library(lme4)
    library(jsonlite)
  })
  outdir <- if (length(args)) args[[1L]] else "reference_glmer"
  only <- if (length(args) > 1L) args[-1L] else NULL
  dir.create(outdir, showWarnings = FALSE, recursive = TRUE)
  cases <- .refglmer_cases()
  for (name in names(cases)) {
    if (!is.null(only) && !name %in% only) next
    value <- .refglmer_case(name, cases[[name]])
    path <- file.path(outdir, paste0(name, ".json"))
    jsonlite::write_json(value, path, digits = NA, auto_unbox = TRUE, na = "null",
                         null = "null")
    message("wrote ", path)
  }
}

if (sys.nframe() == 0L) .refglmer_main(commandArgs(trailingOnly = TRUE))
