# R side of pylmer's influence diagnostics (pylmer/models/influence.py): lme4's own
# influence.merMod (leave-one-out or leave-one-group-out refits; `ncores` worker R
# processes through R's parallel package, as lme4 does it), its dfbeta, dfbetas and
# cooks.distance methods, and lme4's hatvalues and cooks.distance of the fitted model.
# Sourced after bridge.R.

# The data the model was fitted on (held in its formula's environment by pylmer's fits;
# lme4's influence() would take them from getCall(model)$data in its caller).
.pylmer_diag_data <- function(m) {
  data <- environment(stats::formula(m))$data
  if (is.null(data)) stop("the model's data are not available")
  as.data.frame(data)
}

# influence(m, groups, data, ncores) with every table of the result as a plain frame.
.pylmer_diag_influence <- function(m, groups = NULL, ncores = 1L) {
  data <- .pylmer_diag_data(m)
  if (!is.null(groups) && !groups %in% names(data)) {
    .pylmer_stop("argument", "groups: the model's data have no column '", groups, "'")
  }
  args <- list(m, data = data, ncores = as.integer(ncores))
  if (!is.null(groups)) args$groups <- groups
  # lme4 notes "using a cluster of n cores" with ncores >= 2
  inf <- suppressMessages(do.call(stats::influence, args))
  g <- if (is.null(groups)) "case" else groups
  frame <- function(x) as.data.frame(as.matrix(x), optional = TRUE)
  list(fixef_deleted = frame(inf[[paste0("fixed.effects[-", g, "]")]]),
       varcomp_deleted = frame(inf[[paste0("var.cov.comps[-", g, "]")]]),
       dfbeta = frame(stats::dfbeta(inf)),
       dfbetas = frame(stats::dfbetas(inf)),
       cooks = unname(stats::cooks.distance(inf)),
       converged = unname(inf$converged),
       function_evals = as.numeric(unname(inf[["function.evals"]])),
       labels = as.character(inf$deleted))
}

# lme4's hatvalues(model) (the diagonal; one value per used observation).
.pylmer_diag_hat <- function(m) unname(stats::hatvalues(m))

# lme4's cooks.distance(model): from the hat values and Pearson residuals, no refits.
.pylmer_diag_cooks <- function(m) unname(stats::cooks.distance(m))
