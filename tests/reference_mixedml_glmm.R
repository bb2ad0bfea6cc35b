# Reference values for tests/test_mixedml_glmm.py, computed in plain R with lme4 (no
# pylmer code): glmer's own fits of simulated grouped binary and count data, with the data.
#
#   Rscript tests/reference_mixedml_glmm.R OUTDIR
#
# Writes OUTDIR/<case>.json: the data (x, g, y), glmer's Laplace fit of y ~ x + (1 | g)
# (fixed effects, theta, log-likelihood, fitted means, conditional modes) and the nAGQ = 0
# fit of the same model.  The tests run it on their own machine through tests/_refcache.py.
# Everything runs inside .refmmg_main(), called only when Rscript runs this file.

.refmmg_data <- function(family, seed) {
  set.seed(seed)
  n_g <- 50L
  m <- 12L
  g <- sprintf("s%02d", rep(seq_len(n_g), each = m))
  x <- round(stats::rnorm(n_g * m), 6)
  if (family == "binomial") {
    u <- stats::rnorm(n_g, sd = 0.8)[as.integer(factor(g))]
    y <- stats::rbinom(n_g * m, 1L, stats::plogis(-0.3 + 0.8 * x + u))
  } else {
    u <- stats::rnorm(n_g, sd = 0.5)[as.integer(factor(g))]
    y <- stats::rpois(n_g * m, exp(0.5 + 0.4 * x + u))
  }
  data.frame(x = x, g = g, y = y)
}

.refmmg_fit <- function(data, family, nAGQ) {
  fam <- if (family == "binomial") stats::binomial() else stats::poisson()
  lme4::glmer(y ~ x + (1 | g), data = data, family = fam, nAGQ = nAGQ)
}

.refmmg_case <- function(family, seed) {
  data <- .refmmg_data(family, seed)
  m1 <- .refmmg_fit(data, family, 1L)
  m0 <- .refmmg_fit(data, family, 0L)
  re <- lme4::ranef(m1)$g
  list(
    R = R.version.string,
    lme4 = as.character(utils::packageVersion("lme4")),
    family = family,
    data = list(x = data$x, g = data$g, y = data$y),
    fixef = as.list(lme4::fixef(m1)),
    theta = unname(lme4::getME(m1, "theta")),
    loglik = as.numeric(stats::logLik(m1)),
    fitted = unname(stats::fitted(m1)),
    ranef = list(level = rownames(re), value = re[[1L]]),
    fixef_agq0 = as.list(lme4::fixef(m0)),
    theta_agq0 = unname(lme4::getME(m0, "theta"))
  )
}

# New subjects: glmer fitted without the last 5 subjects; each new subject's first 6 rows
# observed.  Their conditional modes with theta and the fixed effects of that fit held
# fixed come from lme4's own PIRLS (a devFunOnly, nAGQ = 0 glmer of the observed rows with
# the fixed part as offset, evaluated at the fitted theta); the probabilities of their
# other 6 rows follow.
.refmmg_new_subjects <- function() {
  data <- .refmmg_data("binomial", 20261123L)
  new_levels <- utils::tail(unique(data$g), 5L)
  train <- data[!data$g %in% new_levels, ]
  new <- data[data$g %in% new_levels, ]
  first <- stats::ave(seq_len(nrow(new)), new$g, FUN = seq_along) <= 6L
  m <- lme4::glmer(y ~ x + (1 | g), data = train, family = stats::binomial())
  obs <- new[first, ]
  obs$o <- stats::predict(m, newdata = obs, re.form = NA)
  dev <- lme4::glmer(y ~ 0 + offset(o) + (1 | g), data = obs, family = stats::binomial(),
                     nAGQ = 0L, devFunOnly = TRUE)
  dev(lme4::getME(m, "theta"))
  b <- environment(dev)$pp$b(1)
  names(b) <- levels(factor(obs$g))
  eta <- stats::predict(m, newdata = new, re.form = NA) + b[new$g]
  list(
    train = list(x = train$x, g = train$g, y = train$y),
    new = list(x = new$x, g = new$g, y = new$y, observed = first),
    fixef = as.list(lme4::fixef(m)),
    theta = unname(lme4::getME(m, "theta")),
    modes = as.list(b),
    probability = unname(stats::plogis(eta))
  )
}

.refmmg_main <- function(args) {
  suppressPackageStartupMessages({
    library(lme4)
    library(jsonlite)
  })
  outdir <- if (length(args)) args[[1L]] else "reference_mixedml_glmm"
  dir.create(outdir, showWarnings = FALSE, recursive = TRUE)
  cases <- list(binary = list("binomial", 20261123L), counts = list("poisson", 20261124L))
  for (name in names(cases)) {
    value <- .refmmg_case(cases[[name]][[1L]], cases[[name]][[2L]])
    path <- file.path(outdir, paste0(name, ".json"))
    jsonlite::write_json(value, path, digits = NA, auto_unbox = TRUE)
    message("wrote ", path)
  }
  jsonlite::write_json(.refmmg_new_subjects(), file.path(outdir, "new_subjects.json"),
                       digits = NA, auto_unbox = TRUE)
}

if (sys.nframe() == 0L) .refmmg_main(commandArgs(trailingOnly = TRUE))
