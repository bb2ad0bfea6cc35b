# Sourced once by pylmer/_r.py into a private environment (never globalenv).
# .pylmer_call() runs one helper and returns a list: ok, value (or error, call), and the
# warnings and messages R raised, so that nothing is printed raw and Python decides how to
# re-issue them.

.pylmer_call <- function(fun, args) {
  warnings <- character()
  messages <- character()
  out <- withCallingHandlers(
    tryCatch(
      list(ok = TRUE, value = do.call(fun, args, envir = environment(.pylmer_call))),
      error = function(e) {
        list(
          ok = FALSE,
          kind = class(e)[1],
          error = conditionMessage(e),
          call = .pylmer_deparse_call(conditionCall(e))
        )
      },
      interrupt = function(i) list(ok = FALSE, interrupted = TRUE, error = "interrupted")
    ),
    warning = function(w) {
      warnings <<- c(warnings, conditionMessage(w))
      invokeRestart("muffleWarning")
    },
    message = function(m) {
      messages <<- c(messages, sub("\n$", "", conditionMessage(m)))
      invokeRestart("muffleMessage")
    }
  )
  out$warnings <- warnings
  out$messages <- messages
  out
}

# Deparse a call for an error report without its argument values, which may be whole data
# frames (slow to deparse and useless in a message).
.pylmer_deparse_call <- function(call) {
  if (is.null(call)) return("")
  if (!is.symbol(call[[1L]])) call[[1L]] <- as.name("<function>")
  if (length(call) > 1L) {
    call[-1L] <- lapply(as.list(call)[-1L], function(a) {
      if (is.language(a) || (is.atomic(a) && length(a) <= 3L)) a else as.name("<value>")
    })
  }
  paste(deparse(call, nlines = 1L, width.cutoff = 500L), collapse = " ")
}

# Signal an error that Python raises as pylmer.FormulaError / pylmer.DataError.
.pylmer_stop <- function(kind, ...) {
  stop(structure(
    class = c(paste0("pylmer_", kind, "_error"), "error", "condition"),
    list(message = paste0(...), call = NULL)
  ))
}

# Bind and drop objects by name in the private environment that holds the user's data.
.pylmer_store <- new.env(parent = emptyenv())

.pylmer_versions <- function() {
  list(
    R = paste(R.version$major, R.version$minor, sep = "."),
    lme4 = as.character(utils::packageVersion("lme4")),
    # the BLAS library R uses (OpenBLAS makes lme4 ~2.7x faster than the reference BLAS)
    blas = utils::sessionInfo()$BLAS,
    lmerTest = if (requireNamespace("lmerTest", quietly = TRUE)) {
      as.character(utils::packageVersion("lmerTest"))
    } else {
      NA_character_
    }
  )
}

.pylmer_dataset <- function(name, package) {
  env <- new.env()
  utils::data(list = name, package = package, envir = env)
  as.data.frame(get(name, envir = env))
}

.pylmer_get <- function(name) get(name, envir = .pylmer_store)

.pylmer_identity <- function(x) x

# Diagnostics (used by the tests): how each column of a data.frame (or of the data bound
# under the name x) looks on the R side. One row per column; levels joined with "\x1f".
.pylmer_describe <- function(x) {
  if (is.character(x) && length(x) == 1L) x <- get(x, envir = .pylmer_store)
  info <- function(f, type) unname(vapply(x, f, type))
  data.frame(
    name = names(x),
    class = info(function(col) paste(class(col), collapse = "/"), ""),
    typeof = info(typeof, ""),
    nlevels = info(nlevels, 0L),
    levels = info(function(col) paste(levels(col), collapse = "\x1f"), ""),
    n_na = info(function(col) sum(is.na(col)), 0L),
    nrow = rep(nrow(x), length(x)),
    stringsAsFactors = FALSE
  )
}

# lme4 >= 1.1-38 parses formulas with the reformulas package and warns when its own
# findbars()/nobars() re-exports are called; use reformulas' where it is installed.
.pylmer_findbars <- function(f) {
  if (requireNamespace("reformulas", quietly = TRUE)) reformulas::findbars(f) else lme4::findbars(f)
}
.pylmer_nobars <- function(f) {
  if (requireNamespace("reformulas", quietly = TRUE)) reformulas::nobars(f) else lme4::nobars(f)
}

# as.data.frame(VarCorr(m)) with pylmer's column names, taken by name (lme4 2.x adds
# attributes and may add columns)
.pylmer_varcorr <- function(m) {
  vc <- as.data.frame(lme4::VarCorr(m))
  data.frame(group = vc$grp, var1 = vc$var1, var2 = vc$var2, variance = vc$vcov,
             sd_or_cor = vc$sdcor, stringsAsFactors = FALSE)
}
