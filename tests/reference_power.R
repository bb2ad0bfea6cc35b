# Reference values for tests/test_power.py from plain R (lme4, lmerTest, pbkrtest): the
# plain-R power loop -- responses drawn once with simulate(m, nsim, seed, newparams), then
# refit() and a test for each -- for lmer (Satterthwaite and Kenward-Roger t tests,
# Satterthwaite F test of a term, likelihood-ratio test) and glmer (Wald z, LRT).
# Usage: Rscript tests/reference_power.R <output dir> (standalone: does nothing when
# sourced).

.ref_power_main <- function(out) {
  suppressMessages({
    library(lme4)
    library(lmerTest)
    library(jsonlite)
  })
  dir.create(out, showWarnings = FALSE, recursive = TRUE)
  put <- function(x, name) {
    writeLines(toJSON(x, digits = NA, auto_unbox = TRUE, na = "null"),
               file.path(out, paste0(name, ".json")))
  }
  data("sleepstudy", package = "lme4")
  # lmerTest re-evaluates the model's call (data = d) in its caller's frame: `d` there
  # holds each draw as its response
  d <- sleepstudy
  m <- lme4::lmer(Reaction ~ Days + (Days | Subject), data = d)
  p <- list(beta = replace(fixef(m), "Days", 4), theta = getME(m, "theta"), sigma = sigma(m))
  nsim <- 12L
  Y <- simulate(m, nsim = nsim, seed = 11, newparams = p)
  sat <- numeric(nsim)
  for (j in seq_len(nsim)) {
    d$Reaction <- Y[[j]]
    f <- suppressMessages(refit(m, Y[[j]]))
    sat[j] <- coef(summary(as_lmerModLmerTest(f)))["Days", "Pr(>|t|)"]
  }
  # Kenward-Roger (pbkrtest through lmerTest): 4 draws of their own
  Y4 <- simulate(m, nsim = 4L, seed = 11, newparams = p)
  kr <- vapply(seq_len(4L), function(j) {
    d$Reaction <- Y4[[j]]
    f <- suppressMessages(refit(m, Y4[[j]]))
    coef(summary(as_lmerModLmerTest(f), ddf = "Kenward-Roger"))["Days", "Pr(>|t|)"]
  }, 0)
  # likelihood-ratio test: both models by ML, anova() of their refits
  m1 <- update(m, REML = FALSE)
  m0 <- update(m1, . ~ . - Days)
  lrt <- vapply(seq_len(nsim), function(j) {
    a <- suppressMessages(anova(refit(m0, Y[[j]]), refit(m1, Y[[j]])))
    a[["Pr(>Chisq)"]][2L]
  }, 0)
  put(list(Y1 = Y[[1L]], satterthwaite = sat, kenward_roger = kr, lrt = lrt,
           theta = unname(getME(m, "theta")), sigma = sigma(m)), "lmer_sleepstudy")

  # a term of two columns: lmerTest's type III Satterthwaite F test
  d <- sleepstudy
  d$grp <- factor(c("a", "b", "c")[(as.integer(d$Subject) %% 3L) + 1L])
  mg <- lme4::lmer(Reaction ~ Days + grp + (1 | Subject), data = d)
  pg <- list(beta = replace(fixef(mg), c("grpb", "grpc"), c(30, -20)),
             theta = getME(mg, "theta"), sigma = sigma(mg))
  Yg <- simulate(mg, nsim = 6L, seed = 5, newparams = pg)
  fterm <- vapply(seq_len(6L), function(j) {
    d$Reaction <- Yg[[j]]
    f <- suppressMessages(refit(mg, Yg[[j]]))
    anova(as_lmerModLmerTest(f))["grp", "Pr(>F)"]
  }, 0)
  put(list(term = fterm), "lmer_term")

  # glmer: cbpp, Wald z of period2 and the LRT of period
  g <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), data = cbpp,
             family = binomial)
  pb <- list(beta = replace(fixef(g), "period2", -0.5), theta = getME(g, "theta"))
  Yb <- simulate(g, nsim = 8L, seed = 3, newparams = pb)
  g0 <- update(g, . ~ . - period)
  z <- lr <- numeric(8L)
  for (j in seq_len(8L)) {
    f <- suppressMessages(refit(g, Yb[[j]]))
    z[j] <- coef(summary(f))["period2", "Pr(>|z|)"]
    f0 <- suppressMessages(refit(g0, Yb[[j]]))
    lr[j] <- suppressMessages(anova(f0, f))[["Pr(>Chisq)"]][2L]
  }
  put(list(z = z, lrt = lr, successes1 = unname(Yb[[1L]][, 1L])), "glmer_cbpp")
}

if (sys.nframe() == 0L) .ref_power_main(commandArgs(trailingOnly = TRUE)[1L])
