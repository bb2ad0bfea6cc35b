# Reference values for tests/test_condvar.py: lme4's conditional variances of the random
# effects, computed in plain R (no pylmer code).
#
#   Rscript tests/reference_condvar.R OUTDIR [insteval]
#
# Writes OUTDIR/<case>.json: per grouping factor, the levels and terms of ranef(m) and
#   postvar  lme4's ranef(m, condVar = TRUE) postVar, level after level, each K x K block
#            column-major (a factor with several terms: K the coefficients of all of them;
#            lme4 1.1 gives the diagonal block of each term: the other entries are null)
#   full     the same blocks from lme4's condVar(m) (sigma^2 Lambda (L'L)^-1 Lambda', a
#            solve against all of Lambda'), cross-term covariances included
# InstEval (y ~ service + (1|s) + (1|d) + (1|dept), REML, calc.derivs = FALSE as pylmer
# fits it) is written only when asked: its condVar takes several seconds.

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = TRUE)
outdir <- args[1L]

blocks <- function(m) {
  re <- ranef(m, condVar = TRUE)
  cv <- lme4:::condVar(m, scaled = TRUE)
  gp <- m@Gp
  nc <- lengths(m@cnms)
  nl <- diff(gp) / nc
  assign <- attr(m@flist, "assign")
  out <- list()
  for (g in seq_along(m@flist)) {
    name <- names(m@flist)[g]
    terms <- which(assign == g)
    k <- sum(nc[terms])
    nlev <- nl[terms[1L]]
    idx <- do.call(cbind, lapply(terms, function(t) {
      outer(seq_len(nlev) - 1L, seq_len(nc[t]), function(l, c) gp[t] + l * nc[t] + c)
    }))
    full <- vapply(seq_len(nlev), function(l) as.vector(as.matrix(cv[idx[l, ], idx[l, ]])),
                   numeric(k * k))
    pv <- attr(re[[name]], "postVar")
    arrays <- if (is.list(pv)) pv else list(pv)
    post <- array(NA_real_, c(k, k, nlev))
    at <- 0L
    for (a in arrays) {
      kk <- dim(a)[1L]
      post[at + seq_len(kk), at + seq_len(kk), ] <- a
      at <- at + kk
    }
    out[[name]] <- list(levels = I(rownames(re[[name]])), terms = I(names(re[[name]])),
                        postvar = as.vector(post), full = as.vector(full))
  }
  out
}

write_case <- function(name, m) {
  writeLines(toJSON(blocks(m), digits = NA, na = "null", auto_unbox = TRUE),
             file.path(outdir, paste0(name, ".json")))
}

ctrl <- lmerControl(calc.derivs = FALSE)
if (identical(args[2L], "insteval")) {
  write_case("insteval", lmer(y ~ service + (1 | s) + (1 | d) + (1 | dept), InstEval,
                              control = ctrl))
  quit(save = "no")
}
sleep <- sleepstudy
sleep$x <- sleep$Days - 4.5
write_case("sleep_vector", lmer(Reaction ~ Days + (Days | Subject), sleepstudy))
write_case("sleep_uncorrelated", lmer(Reaction ~ Days + (Days || Subject), sleepstudy))
write_case("sleep_two_terms", lmer(Reaction ~ x + (1 | Subject) + (0 + x | Subject), sleep))
write_case("penicillin_crossed", lmer(diameter ~ 1 + (1 | plate) + (1 | sample), Penicillin))
write_case("pastes_nested", lmer(strength ~ 1 + (1 | batch / cask), Pastes))
write_case("cake_replicate", lmer(angle ~ recipe * temperature + (1 | recipe:replicate), cake))
write_case("cake_vector", suppressMessages(lmer(angle ~ temp + (temp | recipe), cake)))
write_case("cake_two_factors", lmer(angle ~ temp + (1 | replicate) + (temp | recipe), cake))
write_case("cbpp_glmer", glmer(cbind(incidence, size - incidence) ~ period + (1 | herd),
                               family = binomial, data = cbpp))
write_case("grouseticks_glmer", glmer(TICKS ~ YEAR + (1 | BROOD) + (1 | LOCATION),
                                      family = poisson, data = grouseticks))
