# Reference values for tests/test_control.py in plain R (lme4 only, no pylmer code):
# lmerControl options passed through (optimizers, optCtrl, checks), lme4's convergence
# derivatives and messages, confint's profile and bootstrap options.
#
#   Rscript tests/reference_control.R <outdir>
#
# Writes one JSON per case into <outdir> (tests/_refcache.py runs it once per machine).

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = TRUE)
outdir <- if (length(args)) args[[1L]] else "control-reference"
dir.create(outdir, showWarnings = FALSE, recursive = TRUE)

write_case <- function(name, value) {
  write_json(value, file.path(outdir, paste0(name, ".json")), digits = NA, auto_unbox = TRUE,
             na = "null", null = "null")
}

fit_info <- function(m) {
  d <- m@optinfo$derivs
  list(
    theta = unname(getME(m, "theta")),
    beta = unname(fixef(m)),
    optimizer = m@optinfo$optimizer,
    messages = as.character(c(unlist(m@optinfo$conv$lme4$messages),
                              unlist(m@optinfo$warnings))),
    gradient = if (!is.null(d)) unname(d$gradient),
    hessian = if (!is.null(d)) unname(d$Hessian)
  )
}

f_sleep <- Reaction ~ Days + (Days | Subject)
quiet <- function(expr) suppressWarnings(suppressMessages(expr))

# lme4's defaults (1.1-31: derivatives always computed)
write_case("default", fit_info(lmer(f_sleep, sleepstudy)))
# the evaluation limit reached: lme4's optimizer and gradient messages
write_case("maxeval10", fit_info(quiet(lmer(f_sleep, sleepstudy,
                                            control = lmerControl(optCtrl = list(maxeval = 10))))))

controls <- list(
  bobyqa = lmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5)),
  Nelder_Mead = lmerControl(optimizer = "Nelder_Mead"),
  nlminbwrap = lmerControl(optimizer = "nlminbwrap"),
  optimx_lbfgsb = lmerControl(optimizer = "optimx", optCtrl = list(method = "L-BFGS-B")),
  nlopt_neldermead = lmerControl(optCtrl = list(algorithm = "NLOPT_LN_NELDERMEAD")),
  nlopt_tolerances = lmerControl(optCtrl = list(xtol_abs = 1e-6, ftol_abs = 1e-6)),
  no_restart = lmerControl(restart_edge = FALSE, boundary.tol = 0)
)
for (name in names(controls)) {
  write_case(paste0("optimizer_", name), fit_info(quiet(lmer(f_sleep, sleepstudy,
                                                             control = controls[[name]]))))
}

# confint options on Dyestuff (fast profiles)
m <- lmer(Yield ~ 1 + (1 | Batch), Dyestuff)
ci_json <- function(ci) list(names = rownames(ci), lower = unname(ci[, 1]), upper = unname(ci[, 2]))
write_case("confint_profile_maxpts", ci_json(confint(m, method = "profile", maxpts = 10,
                                                     delta = 0.5, quiet = TRUE)))
write_case("confint_theta_wald", ci_json(confint(m, parm = "beta_", method = "Wald")))
set.seed(7)
write_case("confint_boot_basic", ci_json(quiet(confint(m, method = "boot", nsim = 20,
                                                       boot.type = "basic", quiet = TRUE))))
