# Reference values for tests/test_inference.py, computed in plain R (lme4, lmerTest,
# pbkrtest, emmeans, performance, merTools, broom.mixed when installed; no pylmer code).
#
#   Rscript tests/reference_inference.R <outdir>
#
# Writes one JSON per case: politeness (a simulated design with a 3-level within-subject
# factor, a 2-level between-subject factor and their interaction; the data are in the
# JSON so that Python fits the same rows), politeness_sum (the same model with sum
# coding), sleepstudy, penicillin.  Tests call it through tests/_refcache.py.

.pylmer_reference_main <- function(outdir) {
  suppressPackageStartupMessages({
    library(lme4)
    library(lmerTest)
    library(emmeans)
    library(jsonlite)
  })
  dir.create(outdir, showWarnings = FALSE, recursive = TRUE)
  put <- function(x, name) {
    writeLines(toJSON(x, digits = NA, auto_unbox = TRUE, null = "null", na = "null"),
               file.path(outdir, paste0(name, ".json")))
  }
  # a data frame as {index, columns: {name: values}}
  frame <- function(df) {
    df <- as.data.frame(df)
    for (v in names(df)) if (is.factor(df[[v]])) df[[v]] <- as.character(df[[v]])
    list(index = rownames(df), columns = as.list(df))
  }
  anova_frame <- function(tab) {
    tab <- as.data.frame(tab)
    frame(tab)
  }
  emm_frame <- function(s) frame(as.data.frame(s))
  versions <- list(
    R = R.version.string,
    lme4 = as.character(packageVersion("lme4")),
    lmerTest = as.character(packageVersion("lmerTest")),
    emmeans = as.character(packageVersion("emmeans")),
    pbkrtest = as.character(packageVersion("pbkrtest")),
    performance = as.character(packageVersion("performance"))
  )

  # ---------------------------------------------------------------- politeness design
  set.seed(20261123)
  n_subj <- 18L
  n_item <- 8L
  subj <- sprintf("S%02d", seq_len(n_subj))
  gender <- rep(c("F", "M"), length.out = n_subj)
  conds <- c("informal", "neutral", "polite")
  d <- expand.grid(item = sprintf("I%d", seq_len(n_item)), cond = conds, subject = subj,
                   stringsAsFactors = FALSE)
  d$gender <- gender[match(d$subject, subj)]
  u_subj <- stats::setNames(rnorm(n_subj, 0, 20), subj)
  u_item <- stats::setNames(rnorm(n_item, 0, 10), sprintf("I%d", seq_len(n_item)))
  base <- c(F = 230, M = 130)
  shift <- c(informal = 0, neutral = -8, polite = -20)
  inter <- ifelse(d$gender == "M" & d$cond == "polite", 10, 0)
  d$pitch <- round(base[d$gender] + shift[d$cond] + inter + u_subj[d$subject] +
                     u_item[d$item] + rnorm(nrow(d), 0, 15), 2)
  d <- d[c("subject", "gender", "item", "cond", "pitch")]
  # a few missing responses, as real data have
  d$pitch[c(5L, 77L, 200L)] <- NA
  rownames(d) <- NULL
  dd <- d
  dd$subject <- factor(dd$subject, levels = subj)
  dd$gender <- factor(dd$gender, levels = c("F", "M"))
  dd$item <- factor(dd$item, levels = sprintf("I%d", seq_len(n_item)))
  dd$cond <- factor(dd$cond, levels = conds)
  form <- pitch ~ cond * gender + (1 | subject) + (1 | item)

  for (coding in c("treatment", "sum")) {
    ctr <- if (coding == "sum") list(cond = "contr.sum", gender = "contr.sum") else NULL
    m <- lmer(form, data = dd, contrasts = ctr)
    out <- list(versions = versions, coding = coding,
                fixef = as.list(fixef(m)), loglik = as.numeric(logLik(m)))
    if (coding == "treatment") out$data <- frame(d)
    an <- list()
    for (type in c("1", "2", "3")) {
      for (ddf in c("Satterthwaite", "Kenward-Roger")) {
        an[[paste(type, ddf)]] <- anova_frame(anova(m, type = as.integer(type), ddf = ddf))
      }
    }
    an[["1 lme4"]] <- anova_frame(anova(m, type = 1L, ddf = "lme4"))
    out$anova <- an
    out$ranova <- anova_frame(ranova(m))
    out$drop1 <- list(Satterthwaite = anova_frame(drop1(m)),
                      "Kenward-Roger" = anova_frame(drop1(m, ddf = "Kenward-Roger")))
    out$coef_kr <- frame(coef(summary(m, ddf = "Kenward-Roger")))
    out$coef_sat <- frame(coef(summary(m)))
    # predictions on new rows (the coding must not change them)
    nd <- dd[c(1L, 30L, 100L, 250L), ]
    out$predict <- unname(predict(m, newdata = nd))
    out$predict_rows <- c(1L, 30L, 100L, 250L)
    if (coding == "treatment") {
      mm <- as(m, "lmerMod")
      e1 <- emmeans(mm, "cond", lmer.df = "kenward-roger")
      out$emm_cond_kr <- emm_frame(summary(e1))
      out$emm_cond_kr_pairs <- emm_frame(summary(pairs(e1), infer = c(TRUE, TRUE)))
      e2 <- emmeans(mm, "cond", by = "gender", lmer.df = "satterthwaite")
      out$emm_cond_by_gender_sat <- emm_frame(summary(e2))
      out$emm_cond_by_gender_sat_pairs <- emm_frame(summary(contrast(e2, "pairwise"),
                                                            infer = c(TRUE, TRUE)))
      e3 <- emmeans(mm, c("cond", "gender"), lmer.df = "asymptotic", level = 0.9)
      out$emm_cells_asym <- emm_frame(summary(e3, level = 0.9))
      e4 <- emmeans(mm, "cond", lmer.df = "satterthwaite")
      out$emm_trt <- emm_frame(summary(contrast(e4, "trt.vs.ctrl"), infer = c(TRUE, TRUE)))
      out$emm_poly <- emm_frame(summary(contrast(e4, "poly"), infer = c(TRUE, TRUE)))
      out$emm_custom <- emm_frame(summary(contrast(e4, list(polite_vs_rest = c(-0.5, -0.5, 1))),
                                          infer = c(TRUE, TRUE)))
      out$emm_holm <- emm_frame(summary(contrast(e4, "pairwise", adjust = "holm"),
                                        infer = c(TRUE, TRUE)))
      out$r2 <- as.list(unlist(performance::r2_nakagawa(m)))
      ic <- performance::icc(m)
      out$icc <- list(adjusted = ic$ICC_adjusted, unadjusted = ic$ICC_unadjusted)
    } else {
      mm <- as(m, "lmerMod")
      e <- emmeans(mm, "cond", lmer.df = "satterthwaite")
      out$emm_cond_sat <- emm_frame(summary(e))
      out$emm_cond_sat_pairs <- emm_frame(summary(pairs(e), infer = c(TRUE, TRUE)))
    }
    put(out, paste0("politeness_", coding))
  }

  # ---------------------------------------------------------------- sleepstudy
  m <- lmer(Reaction ~ Days + (Days | Subject), sleepstudy)
  mm <- as(m, "lmerMod")
  out <- list(versions = versions)
  out$r2 <- as.list(unlist(performance::r2_nakagawa(m)))
  ic <- performance::icc(m)
  out$icc <- list(adjusted = ic$ICC_adjusted, unadjusted = ic$ICC_unadjusted)
  out$coef_kr <- frame(coef(summary(m, ddf = "Kenward-Roger")))
  out$ranova <- anova_frame(ranova(m))
  out$ranova_drop <- anova_frame(ranova(m, reduce.terms = FALSE))
  out$anova3_kr <- anova_frame(anova(m, ddf = "Kenward-Roger"))
  # tidy pieces straight from lme4 / lmerTest
  vc <- as.data.frame(VarCorr(m), order = "lower.tri")
  out$vc <- frame(vc)
  rv <- as.data.frame(ranef(m, condVar = TRUE))
  out$ranef <- frame(rv)
  ci <- confint(m, method = "Wald", parm = "beta_")
  out$wald <- frame(as.data.frame(ci))
  prof <- confint(m, method = "profile", oldNames = FALSE, quiet = TRUE)
  out$profile <- frame(as.data.frame(prof))
  if (requireNamespace("broom.mixed", quietly = TRUE)) {
    tb <- broom.mixed::tidy(m, effects = c("fixed", "ran_pars"), conf.int = TRUE)
    out$broom <- frame(as.data.frame(tb))
    tv <- broom.mixed::tidy(m, effects = "ran_vals", conf.int = TRUE)
    out$broom_ran_vals <- frame(as.data.frame(tv))
    out$broom_version <- as.character(packageVersion("broom.mixed"))
  }
  # allFit (lme4's optimizers)
  af <- suppressMessages(allFit(mm, verbose = FALSE))
  sa <- summary(af)
  out$allfit <- list(optimizers = names(af), loglik = as.list(sa$llik),
                     fixef = frame(as.data.frame(sa$fixef)),
                     sdcor = frame(as.data.frame(sa$sdcor)))
  # prediction intervals, by brute force: the dense joint covariance of (beta, b) given y
  # at the estimated theta and sigma, from the mixed-model equations
  X <- getME(m, "X")
  Z <- as.matrix(getME(m, "Z"))
  s2 <- sigma(m)^2
  G <- as.matrix(crossprod(getME(m, "Lambdat"))) * s2  # Var(b) = sigma^2 Lambda Lambda'
  C <- rbind(cbind(crossprod(X), crossprod(X, Z)),
             cbind(crossprod(Z, X), crossprod(Z) + s2 * solve(G)))
  Cinv <- solve(C) * s2
  A <- cbind(X, Z)
  v_known <- rowSums((A %*% Cinv) * A)
  subj_rows <- c(1L, 15L, 99L, 180L)
  out$pi_known <- list(rows = subj_rows, estimate = unname(predict(m)[subj_rows]),
                       se_conf = sqrt(v_known[subj_rows]),
                       se_pred = sqrt(v_known[subj_rows] + s2))
  Vb <- as.matrix(vcov(m))
  Sig <- VarCorr(m)$Subject
  nd <- data.frame(Days = c(0, 4.5, 9), Subject = "new")
  Xn <- cbind(1, nd$Days)
  v_pop <- rowSums((Xn %*% Vb) * Xn)
  v_new <- v_pop + rowSums((Xn %*% Sig) * Xn)
  out$pi_new <- list(days = nd$Days, estimate = unname(predict(m, nd, re.form = NA)),
                     se_pop_conf = sqrt(v_pop), se_new_conf = sqrt(v_new),
                     se_new_pred = sqrt(v_new + s2),
                     df_pop = vapply(nd$Days, function(x) contest1D(m, c(1, x))$df, 0))
  if (requireNamespace("merTools", quietly = TRUE)) {
    set.seed(1)
    pk <- sleepstudy[subj_rows, ]
    pi <- merTools::predictInterval(m, newdata = pk, level = 0.95, n.sims = 4000,
                                    stat = "mean", include.resid.var = TRUE, seed = 1)
    out$mertools <- list(rows = subj_rows, fit = pi$fit, lwr = pi$lwr, upr = pi$upr)
  }
  put(out, "sleepstudy")

  # ---------------------------------------------------------------- Penicillin
  m <- lmer(diameter ~ 1 + (1 | plate) + (1 | sample), Penicillin)
  out <- list(versions = versions)
  out$r2 <- as.list(unlist(performance::r2_nakagawa(m)))
  ic <- performance::icc(m)
  out$icc <- list(adjusted = ic$ICC_adjusted, unadjusted = ic$ICC_unadjusted)
  icg <- as.data.frame(performance::icc(m, by_group = TRUE))
  out$icc_by_group <- frame(icg)
  out$ranova <- anova_frame(ranova(m))
  out$coef_kr <- frame(coef(summary(m, ddf = "Kenward-Roger")))
  put(out, "penicillin")

  # ---------------------------------------------------------------- cbpp (a GLMM)
  g <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, family = binomial)
  out <- list(versions = versions)
  e <- emmeans(g, "period", type = "response")
  out$emm <- emm_frame(summary(e))
  out$emm_pairs <- emm_frame(summary(pairs(e), infer = c(TRUE, TRUE)))
  el <- emmeans(g, "period")
  out$emm_link <- emm_frame(summary(el))
  out$coef <- frame(coef(summary(g)))
  put(out, "cbpp")
}

# Run only as a program (Rscript), never when sourced into another session.
if (sys.nframe() == 0L) {
  args <- commandArgs(trailingOnly = TRUE)
  .pylmer_reference_main(if (length(args)) args[[1L]] else "reference_inference")
}
