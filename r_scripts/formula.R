# The one parse of a model formula (R's own: terms, findbars), read by every caller
# before any data cross: which columns the model uses and which are grouping factors.

.pylmer_formula_parse <- function(formula, columns = character()) {
  f <- tryCatch(
    stats::as.formula(formula),
    error = function(e) {
      odd <- columns[make.names(columns) != columns]
      hint <- if (length(odd)) {
        paste0(" (quote column names that are not R names with backticks, e.g. `",
               odd[1L], "`)")
      } else {
        " (quote column names that are not R names with backticks)"
      }
      .pylmer_stop("formula", "cannot parse the formula '", formula, "': ",
                   conditionMessage(e), hint)
    }
  )
  bars <- .pylmer_findbars(f)
  fixed <- .pylmer_nobars(f)
  list(
    vars = all.vars(f),
    response = if (length(f) == 3L) all.vars(f[[2L]]) else character(),
    fixed = if (length(fixed) == 3L) all.vars(fixed[[3L]]) else all.vars(fixed),
    groups = unique(unlist(lapply(bars, function(b) all.vars(b[[3L]])))),
    random = unique(unlist(lapply(bars, function(b) all.vars(b[[2L]]))))
  )
}
