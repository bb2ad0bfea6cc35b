# Sourced once by pylmer/_r.py into a private environment (never globalenv).
# .pylmer_call() runs one helper and returns a list: ok, value (or error, call), and the
# warnings and messages R raised, so that nothing is printed raw and Python decides how to
# re-issue them.

.pylmer_call <- function(fun, args) {
  warnings <- character()
  messages <- character()
  out <- withCallingHandlers(
    tryCatch(
      list(ok = TRUE, value = do.call(fun, args)),
      error = function(e) {
        call <- conditionCall(e)
        list(
          ok = FALSE,
          kind = class(e)[1],
          error = conditionMessage(e),
          call = if (is.null(call)) "" else paste(deparse(call, nlines = 1L), collapse = " ")
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
