# Satterthwaite denominator degrees of freedom for the fixed effects of an lmer fit,
# computed by pylmer from lme4's own deviance function (no lmerTest code).
#
# The quantities are those of lmerTest's summary(): the variance parameters are
# varpar = (theta, sigma); A = 2 * H^-1 where H is the Hessian of the (ML or REML)
# deviance D(theta, sigma) at the estimates (pseudo-inverse over eigenvalues > 1e-8), and
# for a coefficient j with V = vcov(beta), g = dV[j, j] / d varpar and
# df_j = 2 * V[j, j]^2 / (g' A g).  Only the computation differs:
#
# * sigma enters D and V in closed form: with a(theta) = log|L|^2 (+ log|RX|^2 for REML),
#   b(theta) = penalised weighted residual sum of squares and c = n (ML) or n - p (REML),
#   D = a + b / sigma^2 + c log(2 pi sigma^2) and V = sigma^2 C(theta), so every sigma
#   derivative is exact and only theta needs differences;
# * the gradient of b is exact (envelope theorem: b is a minimum over u and beta), so its
#   Hessian comes from central differences of gradients, which are far less exposed to
#   rounding than second differences of a deviance of size 1e5 (the exact Hessian of b,
#   F_tt - F_tx F_xx^-1 F_xt, agrees to 1e-10 on InstEval but needs lme4's factor as an R
#   object, whose conversion alone costs 0.18 s there);
# * a and C are differenced at steps h and 2h and combined by one Richardson step
#   (fourth order); mixed second derivatives of a use the 2-point cross stencil (also at
#   2h when the data have fewer than `full_nobs` observations, which costs little there).
#
# Singular fits (a variance at zero, a correlation at +-1) are different: the Hessian's
# eigenvalues then span six orders of magnitude or more (cake, angle ~ temp + (temp |
# recipe): 3.8e6 to 2.2), the df hang on its smallest eigenvalue, and no difference scheme
# pins that down to 1e-4; the result is a property of the scheme.  There pylmer uses
# lmerTest's scheme (numDeriv's Richardson Hessian and Jacobian in (theta, sigma) with
# their default settings) on the same deviance, so the numbers are lmerTest's; it costs
# what lmerTest costs (about 110 deviance evaluations for three variance parameters).
#
# The centre values come from the fitted model.  The deviance function is lme4's
# getME(m, "devfun"), which works on the model's own pp/resp objects (a copy through
# as.function() costs as much as five evaluations on InstEval); the model's state is
# restored on exit by evaluating at the estimates again, as lme4's optimizer wrapper does
# after its derivative checks (the state is a function of theta alone), and
# `.pylmer_satt_restored` checks that.

.pylmer_satt_delta <- 3e-3  # relative step (absolute 3e-5 for theta near 0)
.pylmer_satt_floor <- 1e-2

# Evaluate a(theta), b(theta), grad b(theta) and C(theta) with `devfun`.
.pylmer_satt_evaluator <- function(m, devfun) {
  rho <- environment(devfun)
  reml <- lme4::isREML(m)
  Lt <- rho$pp$Lambdat
  Zt <- rho$pp$Zt
  rows <- Lt@i + 1L
  cols <- rep.int(seq_len(ncol(Lt)), diff(Lt@p))
  k <- length(m@theta)
  by_theta <- split(seq_along(rho$pp$Lind), factor(rho$pp$Lind, levels = seq_len(k)))
  sqrtw <- sqrt(rho$resp$weights)
  grad_b <- function(u, wtres) {
    v <- as.vector(Zt %*% (sqrtw * wtres))
    -2 * vapply(by_theta, function(s) sum(u[rows[s]] * v[cols[s]]), 0)
  }
  list(
    at = function(theta) {
      devfun(theta)
      pp <- rho$pp
      list(
        a = pp$ldL2() + if (reml) pp$ldRX2() else 0,
        b = rho$resp$wrss() + pp$sqrL(1),
        gb = grad_b(pp$u(1), rho$resp$wtres),
        C = tcrossprod(pp$RXi())
      )
    },
    centre = function() {
      cmp <- m@devcomp$cmp
      list(
        a = cmp[["ldL2"]] + if (reml) cmp[["ldRX2"]] else 0,
        b = cmp[["pwrss"]],
        gb = grad_b(m@u, m@resp$wtres)
      )
    }
  )
}

# Hessian of a + b / s2 in theta and the theta-derivatives of C, from the stencil at
# scale `h` (a vector of steps); `cross` FALSE skips the mixed derivatives of a.
.pylmer_satt_stencil <- function(ev, centre, theta, h, s2, cross = TRUE) {
  k <- length(theta)
  E <- diag(h, k)
  plus <- lapply(seq_len(k), function(i) ev$at(theta + E[, i]))
  minus <- lapply(seq_len(k), function(i) ev$at(theta - E[, i]))
  Ha <- matrix(0, k, k)
  Hb <- matrix(0, k, k)
  dC <- vector("list", k)
  for (i in seq_len(k)) {
    Ha[i, i] <- (plus[[i]]$a - 2 * centre$a + minus[[i]]$a) / h[i]^2
    Hb[, i] <- (plus[[i]]$gb - minus[[i]]$gb) / (2 * h[i])
    dC[[i]] <- (plus[[i]]$C - minus[[i]]$C) / (2 * h[i])
  }
  if (cross && k > 1L) {
    for (i in seq_len(k - 1L)) {
      for (j in (i + 1L):k) {
        app <- ev$at(theta + E[, i] + E[, j])$a
        amm <- ev$at(theta - E[, i] - E[, j])$a
        Ha[i, j] <- Ha[j, i] <- (app - plus[[i]]$a - plus[[j]]$a + 2 * centre$a -
                                   minus[[i]]$a - minus[[j]]$a + amm) / (2 * h[i] * h[j])
      }
    }
  }
  list(H = Ha + (Hb + t(Hb)) / (2 * s2), dC = dC)
}

# The pieces of lmerTest's lmerModLmerTest: vcov_beta, vcov_varpar (A), Jac_list, the
# Hessian and the warnings lmerTest gives about its eigenvalues.
.pylmer_satt_parts <- function(m, full_nobs = 1e4, tol = 1e-8, in_place = TRUE) {
  if (!inherits(m, "lmerMod")) stop("Satterthwaite df need a linear mixed model (lmerMod)")
  # copies: with in_place, lme4 updates the model's theta vector in place
  theta <- as.numeric(m@theta) + 0
  k <- length(theta)
  sigma <- stats::sigma(m)
  s2 <- sigma^2
  V <- as.matrix(stats::vcov(m))
  n <- stats::nobs(m)
  p <- ncol(V)
  devfun <- if (in_place) lme4::getME(m, "devfun") else as.function(m)
  if (in_place) on.exit(devfun(theta + 0), add = TRUE)
  ev <- .pylmer_satt_evaluator(m, devfun)
  if (lme4::isSingular(m) && requireNamespace("numDeriv", quietly = TRUE)) {
    parts <- .pylmer_satt_numderiv(m, ev, theta, sigma, n, p)
    return(.pylmer_satt_finish(parts$H, parts$jac, V, tol))
  }
  centre <- ev$centre()
  h <- .pylmer_satt_delta * pmax(abs(theta), .pylmer_satt_floor)
  full <- n < full_nobs
  st1 <- .pylmer_satt_stencil(ev, centre, theta, h, s2, cross = TRUE)
  st2 <- .pylmer_satt_stencil(ev, centre, theta, 2 * h, s2, cross = full)
  H2 <- if (full) st2$H else `diag<-`(st1$H, diag(st2$H))
  Hth <- (4 * st1$H - H2) / 3
  dC <- Map(function(x, y) (4 * x - y) / 3, st1$dC, st2$dC)
  cc <- if (lme4::isREML(m)) n - p else n
  H <- matrix(0, k + 1L, k + 1L)
  H[seq_len(k), seq_len(k)] <- Hth
  H[seq_len(k), k + 1L] <- H[k + 1L, seq_len(k)] <- -2 * centre$gb / sigma^3
  H[k + 1L, k + 1L] <- 6 * centre$b / sigma^4 - 2 * cc / s2
  .pylmer_satt_finish(H, c(lapply(dC, function(d) s2 * d), list(2 * V / sigma)), V, tol)
}

# The Hessian H of D in (theta, sigma) and the Jacobian of vcov(beta) (one p x p matrix per
# variance parameter) by numDeriv's defaults, as lmerTest computes them (singular fits).
.pylmer_satt_numderiv <- function(m, ev, theta, sigma, n, p) {
  reml <- lme4::isREML(m)
  deviance_vp <- function(vp) {
    k <- length(vp)
    s2 <- vp[k]^2
    e <- ev$at(vp[-k])
    e$a + e$b / s2 + (if (reml) n - p else n) * log(2 * pi * s2)
  }
  covbeta_vp <- function(vp) {
    k <- length(vp)
    vp[k]^2 * ev$at(vp[-k])$C
  }
  vp <- c(theta, sigma)
  H <- numDeriv::hessian(deviance_vp, vp)
  J <- numDeriv::jacobian(covbeta_vp, vp)
  list(H = H, jac = lapply(seq_len(ncol(J)), function(i) matrix(J[, i], p, p)))
}

# lmerTest's treatment of the Hessian: notes about negative and near-zero eigenvalues,
# A = 2 * pseudo-inverse over the eigenvalues above `tol`.
.pylmer_satt_finish <- function(H, jac, V, tol) {
  if (!all(is.finite(H))) stop("the Hessian of the deviance is not finite")
  eig <- eigen(H, symmetric = TRUE)
  values <- eig$values
  notes <- character()
  neg <- values < -tol
  zero <- abs(values) <= tol
  if (any(neg)) {
    notes <- c(notes, sprintf("Model failed to converge with %d negative eigenvalue%s: %s",
                              sum(neg), if (sum(neg) > 1) "s" else "",
                              paste(sprintf("%1.1e", values[neg]), collapse = " ")))
  }
  if (any(zero)) {
    notes <- c(notes, sprintf("Model may not have converged with %d eigenvalue%s close to zero: %s",
                              sum(zero), if (sum(zero) > 1) "s" else "",
                              paste(sprintf("%1.1e", values[zero]), collapse = " ")))
  }
  pos <- values > tol
  vecs <- eig$vectors[, pos, drop = FALSE]
  A <- 2 * vecs %*% (t(vecs) / values[pos])
  list(vcov_beta = V, vcov_varpar = A, Jac_list = jac, hessian = H, notes = notes)
}

# df and p value of each coefficient (lmerTest's summary() table), with the notes; with
# `lmertest`, also lmerTest's version of the model built from the same derivatives.
.pylmer_lmer_satterthwaite_table <- function(m, lmertest = FALSE) {
  parts <- .pylmer_satt_parts(m)
  V <- parts$vcov_beta
  beta <- lme4::fixef(m)
  df <- vapply(seq_along(beta), function(j) {
    g <- vapply(parts$Jac_list, function(J) J[j, j], 0)
    2 * V[j, j]^2 / sum(g * (parts$vcov_varpar %*% g))
  }, 0)
  t <- unname(beta) / sqrt(diag(V))
  list(
    table = data.frame(df = df, p_value = 2 * stats::pt(abs(t), df, lower.tail = FALSE),
                       row.names = names(beta)),
    notes = parts$notes,
    lmertest = if (lmertest) .pylmer_satt_lmertest(m, parts)
  )
}

# lmerTest's version of `m` (class lmerModLmerTest) carrying the pieces `parts` of
# .pylmer_satt_parts: lmerTest's anova, drop1 and emmeans' Satterthwaite df read them from
# its slots, so they need no further derivatives.  NULL when lmerTest is not installed.
.pylmer_satt_lmertest <- function(m, parts) {
  if (!requireNamespace("lmerTest", quietly = TRUE)) return(NULL)
  mt <- methods::as(m, "lmerModLmerTest")
  mt@sigma <- stats::sigma(m)
  mt@vcov_beta <- parts$vcov_beta
  mt@vcov_varpar <- parts$vcov_varpar
  mt@Jac_list <- parts$Jac_list
  mt
}

# TRUE when the model's pp/resp hold the state of the fit (tests: nothing was moved).
.pylmer_satt_restored <- function(m) {
  cmp <- m@devcomp$cmp
  identical(m@pp$ldL2(), cmp[["ldL2"]]) && identical(m@pp$ldRX2(), cmp[["ldRX2"]]) &&
    identical(m@resp$wrss() + m@pp$sqrL(1), cmp[["pwrss"]]) &&
    identical(m@pp$u(1), m@u) && identical(m@pp$beta(1), m@beta) &&
    identical(as.numeric(m@pp$theta), as.numeric(m@theta))
}

# Byte-compile once when the file is sourced (R would compile them on the first model of a
# session, inside the first fit's time).
for (.pylmer_fn in c(".pylmer_satt_evaluator", ".pylmer_satt_stencil", ".pylmer_satt_parts",
                     ".pylmer_satt_numderiv", ".pylmer_satt_finish", ".pylmer_satt_lmertest",
                     ".pylmer_lmer_satterthwaite_table")) {
  assign(.pylmer_fn, compiler::cmpfun(get(.pylmer_fn)))
}
rm(.pylmer_fn)
