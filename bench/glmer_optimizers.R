# The opt-in glmer path of bench/glmer.py in plain R: each model fitted with glmer's default
# optimizers (bobyqa, then Nelder_Mead) and with nloptwrap for both stages; prints CPU and
# wall seconds, the ratio and the agreement (log-likelihood, fixed effects, theta).
#
#   Rscript bench/glmer_optimizers.R

suppressPackageStartupMessages(library(lme4))
set.seed(1)
n <- 1e5; ng <- 2000; ni <- 100
big <- data.frame(g = factor(sample(ng, n, TRUE)), h = factor(sample(ni, n, TRUE)), x = rnorm(n))
eta <- -0.5 + 0.8 * big$x + rnorm(ng, sd = 0.7)[big$g] + rnorm(ni, sd = 0.4)[big$h]
big$y <- rbinom(n, 1, plogis(eta))
cases <- list(
  VerbAgg = list(f = r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item), d = VerbAgg, fam = binomial),
  cbpp = list(f = cbind(incidence, size - incidence) ~ period + (1 | herd), d = cbpp, fam = binomial),
  grouseticks = list(f = TICKS ~ YEAR + HEIGHT + (1 | BROOD) + (1 | LOCATION), d = grouseticks, fam = poisson),
  binom1e5 = list(f = y ~ x + (1 | g) + (1 | h), d = big, fam = binomial)
)
cpu <- function() { p <- proc.time(); p[["user.self"]] + p[["sys.self"]] }
for (nm in names(cases)) {
  cs <- cases[[nm]]
  fits <- list()
  for (ctl in c("default", "nloptwrap")) {
    control <- if (ctl == "default") glmerControl() else glmerControl(optimizer = c("nloptwrap", "nloptwrap"))
    c0 <- cpu(); w0 <- proc.time()[["elapsed"]]
    m <- suppressWarnings(suppressMessages(glmer(cs$f, data = cs$d, family = cs$fam, control = control)))
    fits[[ctl]] <- list(cpu = cpu() - c0, wall = proc.time()[["elapsed"]] - w0, m = m)
  }
  a <- fits$default$m; b <- fits$nloptwrap$m
  cat(sprintf("%s: default cpu %.2f wall %.2f | nloptwrap cpu %.2f wall %.2f | ratio cpu %.2f | loglik rel %.2e | max fixef rel %.2e | max theta abs %.2e | evals %d vs %d\n",
              nm, fits$default$cpu, fits$default$wall, fits$nloptwrap$cpu, fits$nloptwrap$wall,
              fits$nloptwrap$cpu / fits$default$cpu,
              abs(as.numeric(logLik(b)) / as.numeric(logLik(a)) - 1),
              max(abs(fixef(b) / fixef(a) - 1)), max(abs(getME(b, "theta") - getME(a, "theta"))),
              a@optinfo$feval, b@optinfo$feval))
}
