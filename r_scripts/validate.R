# The plain-R side of `pylmer validate` (and of examples/insteval.py): fit one linear
# mixed model with lme4 in a fresh R process, with no pylmer code, and write every
# quantity pylmer reports to a JSON file at full precision.
#
#   Rscript r_scripts/validate.R DATA FORMULA REML OUT.json [FAMILY LINK]
#
# DATA     a CSV file (read as pandas.read_csv does: strings become factors whose levels
#          are sorted in C-locale order, like pylmer's converter), or lme4:NAME for one
#          of lme4's data sets (e.g. lme4:InstEval)
# FORMULA  an lme4 formula, e.g. "Reaction ~ Days + (Days | Subject)"
# REML     TRUE or FALSE
# OUT      the JSON file to write: meta (versions, seconds), fixef, vcov, ranef, ranef_sd,
#          varcorr, sigma, loglik, theta, rows (1-based rows used), fitted, residuals
# FAMILY   optional: fit a GLMM with glmer (binomial, poisson, Gamma, inverse.gaussian) or
# LINK     glmer.nb (negative_binomial), with this link; REML is then ignored

# Everything runs inside .validate_main(), called only when this file is the script Rscript
# runs (sys.nframe() is 0 there): pylmer's R bridge may source r_scripts/*.R, and then this
# file only defines the three .validate_* functions.

.validate_read <- function(src) {
  if (startsWith(src, "lme4:")) {
    name <- sub("^lme4:", "", src)
    env <- new.env()
    utils::data(list = name, package = "lme4", envir = env)
    return(as.data.frame(get(name, envir = env)))
  }
  data <- utils::read.csv(src, stringsAsFactors = FALSE, check.names = FALSE,
                          na.strings = c("", "NA", "NaN"))
  for (col in names(data)) {
    if (is.character(data[[col]])) {
      data[[col]] <- factor(data[[col]], levels = sort(unique(data[[col]]), method = "radix"))
    }
  }
  data
}

.validate_frame <- function(df) {
  list(index = rownames(df), names = names(df), columns = lapply(as.list(df), function(x) {
    if (is.factor(x)) as.character(x) else x
  }))
}

.validate_main <- function(args) {
  if (!length(args) %in% c(4L, 6L)) {
    stop("usage: Rscript validate.R DATA.csv|lme4:NAME FORMULA REML OUT.json [FAMILY LINK]",
         call. = FALSE)
  }
  suppressPackageStartupMessages({
    library(lme4)
    library(jsonlite)
  })
  formula <- stats::as.formula(args[[2L]])
  reml <- as.logical(args[[3L]])
  if (is.na(reml)) stop("REML must be TRUE or FALSE, not '", args[[3L]], "'", call. = FALSE)
  data <- .validate_read(args[[1L]])
  started <- proc.time()[["elapsed"]]
  m <- if (length(args) == 4L) {
    lmer(formula, data = data, REML = reml)
  } else if (args[[5L]] == "negative_binomial") {
    glmer.nb(formula, data = data)
  } else {
    glmer(formula, data = data, family = get(args[[5L]], mode = "function")(link = args[[6L]]))
  }
  seconds <- proc.time()[["elapsed"]] - started

  re <- ranef(m, condVar = TRUE)
  ranef_sd <- lapply(re, function(r) {
    pv <- attr(r, "postVar")
    out <- as.data.frame(lapply(seq_len(ncol(r)), function(k) sqrt(pv[k, k, ])))
    names(out) <- names(r)
    rownames(out) <- rownames(r)
    out
  })
  beta <- fixef(m)
  V <- as.matrix(vcov(m))
  vc <- as.data.frame(VarCorr(m))
  names(vc) <- c("group", "var1", "var2", "variance", "sd_or_cor")
  fit <- fitted(m)
  result <- list(
    meta = list(
      R = paste(R.version$major, R.version$minor, sep = "."),
      lme4 = as.character(utils::packageVersion("lme4")),
      formula = paste(deparse(formula), collapse = " "),
      reml = reml,
      nobs = nobs(m),
      seconds = seconds
    ),
    fixef = list(names = names(beta), estimate = unname(beta), std_error = sqrt(diag(V))),
    vcov = unname(V),
    ranef = lapply(re, function(r) .validate_frame(as.data.frame(r))),
    ranef_sd = lapply(ranef_sd, .validate_frame),
    varcorr = .validate_frame(vc),
    sigma = sigma(m),
    loglik = as.numeric(logLik(m)),
    theta = unname(getME(m, "theta")),
    rows = as.integer(names(fit)),
    fitted = unname(fit),
    residuals = unname(residuals(m))
  )
  jsonlite::write_json(result, args[[4L]], digits = I(17), auto_unbox = TRUE, na = "null",
                       null = "null")
  invisible(result)
}

if (sys.nframe() == 0L) .validate_main(commandArgs(trailingOnly = TRUE))
