"""The only part of pylmer that imports rpy2: the embedded R session and conversion.

:mod:`pylmer.r.session` starts R lazily (never at import of :mod:`pylmer`), serialises
calls with a lock, owns the R objects pylmer keeps, and scopes R's errors, warnings and
console output to each call; :mod:`pylmer.r.convert` moves vectors and frames across.
"""
