# What pylmer needs to compute the conditional covariances of the random effects
# (lme4's ranef(condVar = TRUE), postVar) itself: lme4's own fitted sparse Cholesky factor
# L of Lambda' Z' W Z Lambda + I (P A P' = L L'), as CHOLMOD stores it, the covariance
# factor Lambda of one level of each term, and the term layout.  The selected inversion
# (Takahashi recurrences on the pattern of L) runs in Python (pylmer/models/condvar.py):
# no solve per level, so it costs about as much as one factorisation.
#
# Returned as plain vectors (0-based CHOLMOD indices as stored):
#   kind      "super" (supernodal: super, pi, px, s, x) or "simpl" (simplicial: p, i, nz, x)
#   perm      the fill-reducing permutation (row a of P A P' is row perm[a] of A)
#   gp        first index of each term in u (lme4's Gp without the total)
#   nc, nl    coefficients and levels of each term
#   assign    the grouping factor (1-based, names(flist) order) of each term
#   lambda    the k x k blocks of Lambda (b = Lambda u) of each term, column-major
#   sigma2    sigma(m)^2 (lme4 scales the covariances by it; 1 for binomial/Poisson)

.pylmer_condvar_parts <- function(m) {
  L <- lme4::getME(m, "L")
  if (!L@type[[2L]]) .pylmer_stop("argument", "lme4's factor is an LDL' factor; expected LL'")
  gp <- m@Gp
  nc <- lengths(m@cnms)
  lambda_t <- lme4::getME(m, "Lambdat")
  lambda <- lapply(seq_along(nc), function(t) {
    idx <- gp[t] + seq_len(nc[t])
    as.vector(t(as.matrix(lambda_t[idx, idx, drop = FALSE])))
  })
  factor <- if (methods::is(L, "dCHMsuper")) {
    list(kind = "super", super = L@super, pi = L@pi, px = L@px, s = L@s, x = L@x)
  } else {
    list(kind = "simpl", p = L@p, i = L@i, nz = L@nz, x = L@x)
  }
  c(factor, list(
    perm = L@perm,
    gp = gp[-length(gp)],
    nc = unname(nc),
    nl = unname(diff(gp) / nc),
    assign = attr(m@flist, "assign"),
    groups = names(m@flist),
    lambda = lambda,
    sigma2 = stats::sigma(m)^2
  ))
}

# The same blocks by lme4's own dense-in-levels route (condVar(): a solve of L against all
# of Lambda'), for a model whose blocks are not all on the factor's pattern: per grouping
# factor, the levels x K x K values (level fastest), K the coefficients of all its terms.
.pylmer_condvar_lme4 <- function(m) {
  cv <- lme4:::condVar(m, scaled = TRUE)
  gp <- m@Gp
  nc <- lengths(m@cnms)
  nl <- diff(gp) / nc
  assign <- attr(m@flist, "assign")
  out <- lapply(seq_along(m@flist), function(g) {
    terms <- which(assign == g)
    idx <- do.call(cbind, lapply(terms, function(t) {
      outer(seq_len(nl[t]) - 1L, seq_len(nc[t]), function(l, c) gp[t] + l * nc[t] + c)
    }))
    k <- ncol(idx)
    vals <- vapply(seq_len(nrow(idx)), function(l) as.vector(as.matrix(cv[idx[l, ], idx[l, ]])),
                   numeric(k * k))
    as.vector(vals)
  })
  names(out) <- names(m@flist)
  out
}
