"""The only module that talks to R.

R starts lazily on the first call, never at ``import pylmer``.  The R code of pylmer
lives in ``r_scripts/`` (:func:`script_dir`); the scripts named in :data:`SCRIPTS` are
sourced once, in that order, into a private environment.  To add an R helper file, put
it in ``r_scripts/`` and add its name to :data:`SCRIPTS` (a script run as a separate
``Rscript`` program is listed in :data:`PROGRAMS` instead; R scripts that write test
reference values live under ``tests/``).  Every call goes through :func:`call`, which

* converts Python arguments (DataFrames, arrays, scalars, dicts) to R,
* runs the helper inside R's ``tryCatch`` / ``withCallingHandlers`` so that R errors
  become :class:`pylmer.RError` (or :class:`~pylmer.FormulaError` /
  :class:`~pylmer.DataError` when the helper signals one) and R warnings and messages
  become Python warnings, and nothing is printed raw,
* converts the result back to plain Python / numpy / pandas values; R objects that have
  no such equivalent (fitted models) come back as opaque :class:`RObject` handles.

rpy2's embedded R is single threaded: every R call holds one process-wide lock, so
threads serialise.  For parallel work use processes (e.g. joblib's ``loky`` backend):
each process starts its own R.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import errors
from ..errors import (
    DataError,
    FormulaError,
    InvalidArgumentError,
    PylmerError,
    RError,
    RMessage,
    RNotAvailableError,
    ROutOfMemoryError,
    RWarning,
    SingularFitWarning,
    warn,
)

__all__ = ["RObject", "bind", "call", "held", "lock", "r_versions", "started"]

MIN_LME4 = (1, 1, 31)
INSTALL_HINT = (
    "install R and lme4, e.g. on Debian/Ubuntu `apt-get install r-base-core r-cran-lme4 "
    "r-cran-lmertest r-cran-jsonlite`, or with conda `conda install -c conda-forge r-base "
    "r-lme4 r-lmertest rpy2`"
)

lock = threading.RLock()
_state: dict[str, Any] = {}
_names = itertools.count()
_pending_unbind: list[str] = []
#: names of unbound data, reused by the next bind: R never frees a symbol, so a fresh
#: name per bind grew R's symbol table by ~170 bytes a bind, for ever
_free_names: list[str] = []
#: every long-lived R object, by key; handles hold keys.  rpy2 releases an R object in
#: whichever thread drops the last reference to it, possibly while another thread is
#: inside R: dropping them only here, under the lock, keeps that out of R's way.
_objects: dict[int, Any] = {}
_pending_release: list[int] = []
_keys = itertools.count()


#: The R scripts pylmer sources into its environment, in order: bridge.R first (the
#: others use its helpers), then the rest.  A new script is sourced once it is listed here.
SCRIPTS: tuple[str, ...] = (
    "bridge.R",
    "condvar.R",
    "diagnostics.R",
    "formula.R",
    "glmer.R",
    "glmmtmb.R",
    "inference.R",
    "lmer.R",
    "mixedml.R",
    "mixedml_glmm.R",
    "nlmer.R",
    "parallel.R",
    "power.R",
    "satterthwaite.R",
)
#: The R scripts of r_scripts/ run as separate ``Rscript`` programs, never sourced
#: (validate.R: the plain-R fit of ``pylmer validate``).
PROGRAMS: tuple[str, ...] = ("validate.R",)


def script_dir() -> Path:
    """Return the folder of pylmer's R scripts (``pylmer/r_scripts`` in a wheel,
    ``r_scripts/`` beside the package in a source tree)."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "r_scripts", package.parent / "r_scripts"):
        if (candidate / "bridge.R").exists():
            return candidate
    raise RNotAvailableError(f"pylmer's R scripts are missing (looked in {package})")


def started() -> bool:
    """Return whether the embedded R has been started in this process."""
    return "env" in _state


def _console_sink(text: str) -> None:
    _state.setdefault("console", []).append(text)


def _start() -> None:
    try:
        import rpy2.rinterface as ri
        from rpy2.rinterface_lib import callbacks  # noqa: F401  (loads with R; checked here)
    except Exception as exc:  # ImportError, or OSError when libR cannot be loaded
        raise RNotAvailableError(
            f"rpy2 cannot load R ({type(exc).__name__}: {exc}); {INSTALL_HINT}. "
            "Note: with R 4.2 only rpy2 3.5.x works (rpy2 3.6 misses the symbol R_getVar)."
        ) from exc
    # R's start-up (etc/ldpaths) prepends its library directories, among them the
    # system's /usr/lib/<arch>, to LD_LIBRARY_PATH in this process's environment.  This
    # process has loaded its libraries already; but Python processes started later (loky
    # workers, Dask nannies) would inherit it and, for a Python that is not the system's
    # (pyenv, conda), load the system's libpython ("undefined symbol: _PyModule_Add" on
    # `import ssl`).  So the variable is put back as it was.
    #
    # R's start also sets the process locale from the environment (setlocale(LC_ALL,
    # "")): LC_COLLATE, LC_TIME, LC_MONETARY, LC_MESSAGES went from Python's "C" to
    # "C.UTF-8", changing how the user's own Python code collates and formats.  Those
    # are put back too (LC_CTYPE stays: R decided at start whether text is UTF-8, and
    # Python had set it from the environment already).  R keeps sorting text as plain
    # Rscript does: its ICU collator is chosen on the first comparison, made here while
    # R's locale is still in place.
    ld_before = os.environ.get("LD_LIBRARY_PATH")
    locale_before = _process_locale()
    try:
        with _console():
            ri.initr_simple()
            ri.baseenv["sort"](ri.StrSexpVector(["b", "A", "a"]))  # fixes R's collator
            _source_scripts(ri)
    finally:
        if ld_before is None:
            os.environ.pop("LD_LIBRARY_PATH", None)
        else:
            os.environ["LD_LIBRARY_PATH"] = ld_before
        _restore_locale(locale_before)


#: the locale categories R's start changes and pylmer puts back (not LC_CTYPE)
_LOCALE_CATEGORIES = ("LC_COLLATE", "LC_TIME", "LC_MONETARY", "LC_MESSAGES", "LC_NUMERIC")


def _process_locale() -> dict[int, str]:
    import locale

    cats = [getattr(locale, n) for n in _LOCALE_CATEGORIES if hasattr(locale, n)]
    return {c: locale.setlocale(c) for c in cats}


def _restore_locale(saved: dict[int, str]) -> None:
    import locale

    for category, value in saved.items():
        try:
            locale.setlocale(category, value)
        except locale.Error:  # pragma: no cover - a value that was valid a moment ago
            pass


@contextlib.contextmanager
def _console() -> Iterator[None]:
    """Collect R's console output while pylmer's own calls run; restore rpy2's callbacks
    afterwards, so a user's own rpy2 output is printed as usual."""
    from rpy2.rinterface_lib import callbacks

    names = ("consolewrite_print", "consolewrite_warnerror", "showmessage")
    saved = [getattr(callbacks, n) for n in names]
    for n in names:
        setattr(callbacks, n, _console_sink)
    try:
        yield
    finally:
        for n, f in zip(names, saved, strict=True):
            setattr(callbacks, n, f)


def _source_scripts(ri: Any) -> None:
    from . import convert as _convert

    env = ri.baseenv["new.env"]()
    source = ri.baseenv["sys.source"]
    folder = script_dir()
    for name in SCRIPTS:
        source(ri.StrSexpVector([str(folder / name)]), envir=env)
    _state.update(ri=ri, convert=_convert, env=env, store=env.find(".pylmer_store"))
    ok = ri.baseenv["requireNamespace"](ri.StrSexpVector(["lme4"]), quietly=True)[0]
    if not ok:
        _state.pop("env")
        raise RNotAvailableError(f"the R package lme4 is not installed; {INSTALL_HINT}")
    found = _raw_call(".pylmer_versions")["value"]["lme4"]
    version = tuple(int(p) for p in found.replace("-", ".").split(".")[:3])
    if version < MIN_LME4:
        _state.pop("env")
        raise RNotAvailableError(
            f"lme4 {'.'.join(map(str, version))} is too old; pylmer needs lme4 >= 1.1-31: "
            + INSTALL_HINT
        )


def _ensure() -> None:
    """Start R when needed and drop the R objects whose handles are gone (under the lock)."""
    if "env" not in _state:
        _start()
    while _pending_release:
        _objects.pop(_pending_release.pop(), None)
    while _pending_unbind:
        name = _pending_unbind.pop()
        _state["ri"].baseenv["rm"](list=_state["ri"].StrSexpVector([name]), envir=_state["store"])
        _free_names.append(name)


# ------------------------------------------------------------------ R objects


class RObject:
    """An opaque handle on an R object (e.g. a fitted ``merMod``) kept alive in R.

    The object itself is owned by this module (``_objects``); the handle holds its key.
    When the handle is garbage collected, in whatever thread, the object is released at
    the next R call, under the lock.  Handles do not pickle: they belong to one R session.
    """

    __slots__ = ("__weakref__", "key", "rclass")

    def __init__(self, sexp: Any, rclass: tuple[str, ...]):
        self.key = next(_keys)
        self.rclass = rclass
        _objects[self.key] = sexp
        weakref.finalize(self, _pending_release.append, self.key)

    @property
    def sexp(self) -> Any:
        """The R object (use it only while holding :data:`lock`)."""
        return _objects[self.key]

    def __repr__(self) -> str:
        return f"<R object of class {'/'.join(self.rclass) or '?'}>"

    def __reduce__(self):
        raise TypeError("R objects cannot be pickled; pickle the pylmer result instead")


class DataRef:
    """A DataFrame bound by name in pylmer's private R environment.

    Pass it to :func:`call`; R helpers receive the *name* and look the data up with
    ``get(name, envir = .pylmer_store)``, so the data never get deparsed into a call.
    The binding is removed when the reference is garbage collected.
    """

    __slots__ = ("__weakref__", "name", "nrow")

    def __init__(self, name: str, nrow: int):
        self.name = name
        self.nrow = nrow
        weakref.finalize(self, _pending_unbind.append, name)

    def __repr__(self) -> str:
        return f"<R data {self.name} ({self.nrow} rows)>"


def bind(df: pd.DataFrame) -> DataRef:
    """Convert ``df`` to an R data.frame once and bind it in the private environment."""
    with lock:
        _ensure()
        frame = _state["convert"].frame_to_r(df)
        name = _free_names.pop() if _free_names else f"data{next(_names)}"
        _state["store"][name] = frame
        return DataRef(name, len(df))


# ------------------------------------------------------------------ conversion


def _to_r(value: Any) -> Any:
    ri = _state["ri"]
    conv = _state["convert"]
    if value is None:
        return ri.NULL
    if isinstance(value, RObject):
        return value.sexp
    if isinstance(value, DataRef):
        return ri.StrSexpVector([value.name])
    if isinstance(value, pd.DataFrame):
        return conv.frame_to_r(value)
    if isinstance(value, bool | np.bool_):
        return ri.BoolSexpVector([bool(value)])
    if isinstance(value, int | np.integer):
        return ri.IntSexpVector([int(value)]) if abs(value) < 2**31 - 1 else _to_r(float(value))
    if isinstance(value, float | np.floating):
        return ri.FloatSexpVector([float(value)])
    if isinstance(value, str):
        return conv.text([value], "a text argument")
    if isinstance(value, Mapping):
        out = ri.ListSexpVector([_to_r(v) for v in value.values()])
        out.do_slot_assign("names", ri.StrSexpVector([str(k) for k in value]))
        return out
    if isinstance(value, pd.Series | pd.Index | np.ndarray | pd.api.extensions.ExtensionArray):
        if value.ndim == 0:
            return _to_r(value.item())
        # keep the dtype (a categorical Series stays a factor with its levels)
        return conv.column_to_r(value if isinstance(value, pd.Series) else pd.Series(value))
    if isinstance(value, Sequence):
        if value and all(isinstance(v, str) for v in value):
            return conv.text(list(value), "a text argument")
        if value and all(isinstance(v, int | float | np.number) for v in value):
            return conv.column_to_r(pd.Series(value))
        return ri.ListSexpVector([_to_r(v) for v in value])
    raise TypeError(f"cannot pass a {type(value).__name__} to R")


def _from_r(obj: Any) -> Any:
    ri = _state["ri"]
    conv = _state["convert"]
    kind = obj.typeof
    if kind == ri.RTYPES.NILSXP:
        return None
    rclass = conv.attr(obj, "class")
    classes = tuple(rclass) if rclass is not None else ()
    if kind == ri.RTYPES.VECSXP and "data.frame" in classes:
        return conv.frame_from_r(obj)
    if kind == ri.RTYPES.VECSXP and not classes:
        names = conv.attr(obj, "names")
        items = [_from_r(v) for v in obj]
        if names is not None:
            return dict(zip(names, items, strict=True))
        return items
    if kind in (ri.RTYPES.REALSXP, ri.RTYPES.INTSXP, ri.RTYPES.LGLSXP, ri.RTYPES.STRSXP):
        values = conv.vector_to_numpy(obj)
        dim = conv.attr(obj, "dim")
        if dim is not None and len(dim) == 2:
            return _matrix(obj, np.asarray(values), tuple(dim))
        names = conv.attr(obj, "names")
        if names is not None:
            return pd.Series(values, index=pd.Index(list(names)))
        if len(values) == 1 and not isinstance(values, pd.Categorical | pd.DatetimeIndex):
            value = values[0]
            return None if value is pd.NA else (value.item() if hasattr(value, "item") else value)
        return values
    return RObject(obj, classes)


def _matrix(obj: Any, values: np.ndarray, dim: tuple[int, int]) -> pd.DataFrame:
    ri = _state["ri"]
    mat = values.reshape(dim, order="F")
    dimnames = _state["convert"].attr(obj, "dimnames")
    index = columns = None
    if dimnames is not None:
        rows, cols = dimnames
        index = list(rows) if rows.typeof == ri.RTYPES.STRSXP else None
        columns = list(cols) if cols.typeof == ri.RTYPES.STRSXP else None
    return pd.DataFrame(mat, index=index, columns=columns)


# ------------------------------------------------------------------ calling R

_ERROR_KINDS: dict[str, type[PylmerError]] = {
    "pylmer_formula_error": FormulaError,
    "pylmer_data_error": DataError,
    "pylmer_argument_error": InvalidArgumentError,
}


def classify_warning(text: str) -> type[Warning]:
    """Map an R warning or message text to the Python warning class it is re-issued as."""
    low = text.lower()
    if "singular" in low:
        return SingularFitWarning
    if "converge" in low or "hessian" in low or "eigenvalue" in low:
        return errors.LmerConvergenceWarning  # (imports scikit-learn on first use)
    return RWarning


def _raw_call(fun: str, *args: Any, **kwargs: Any) -> Any:
    ri = _state["ri"]
    env = _state["env"]
    rargs = ri.ListSexpVector([_to_r(a) for a in args] + [_to_r(v) for v in kwargs.values()])
    rargs.do_slot_assign("names", ri.StrSexpVector([""] * len(args) + list(kwargs)))
    if _state.get("sigint_hits"):  # Ctrl-C while the arguments were converted
        raise KeyboardInterrupt
    # the helper goes by name: R looks it up (errors if missing) and error calls stay short
    _state["in_r"] = True
    try:
        out = env.find(".pylmer_call")(ri.StrSexpVector([fun]), rargs)
    finally:
        _state["in_r"] = False
    return _from_r(out)


def call(fun: str, *args: Any, stacklevel: int = 3, **kwargs: Any) -> Any:
    """Call the R helper ``fun`` (defined in ``r_scripts/``) and return its converted value.

    Parameters
    ----------
    fun : str
        Name of an R function defined in the private environment.
    *args, **kwargs
        Arguments converted with the rules of :mod:`pylmer.r.convert`; a
        :class:`DataRef` passes the *name* of bound data.
    stacklevel : int
        Unused (kept for callers): re-issued R warnings point at the first frame
        outside pylmer, the user's line.

    Returns
    -------
    object
        The helper's value converted to Python.

    Raises
    ------
    RError, FormulaError, DataError
        When R signals an error; the R session stays usable.
    KeyboardInterrupt
        When the computation was interrupted (Ctrl-C).
    """
    value, _ = call_with_conditions(fun, *args, stacklevel=stacklevel + 1, **kwargs)
    return value


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """Route Ctrl-C (SIGINT) to R while R runs; raise KeyboardInterrupt afterwards.

    rpy2 relies on Python's default SIGINT handler raising KeyboardInterrupt inside its
    ``R_ProcessEvents`` callback, which then tells R.  But Python (3.11+) runs a pending
    signal handler as the callback is *entered*, before its ``try`` block, so the
    exception is printed as "Exception ignored from cffi callback" and R keeps running
    (a long lme4 fit cannot be stopped).  While R runs, this context installs a handler
    that only sets R's ``R_interrupts_pending``: R raises its interrupt condition at its
    next check (``.pylmer_call`` turns it into ``interrupted``), and a SIGINT that R did
    not act on still ends in KeyboardInterrupt here, with R's flag cleared so the next
    call is not hit.  Only in the main thread, only over Python's default handler (a
    custom SIGINT handler is left alone), and only at the outermost level.  Call it
    holding :data:`lock`.
    """
    if (
        _state.get("sigint_installed")
        or threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    from rpy2.rinterface_lib import openrlib

    rlib = openrlib.rlib
    hits: list[int] = _state.setdefault("sigint_hits", [])
    hits.clear()

    def handler(signum: int, frame: Any) -> None:
        hits.append(signum)
        # only while R evaluates: set during a conversion, R would act on the flag in
        # its next garbage collection, outside any R context, and abort the process
        if _state.get("in_r"):
            rlib.R_interrupts_pending = 1

    signal.signal(signal.SIGINT, handler)
    _state["sigint_installed"] = True
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _state["sigint_installed"] = False
        interrupted = bool(hits)
        hits.clear()
        if interrupted:
            rlib.R_interrupts_pending = 0
    if interrupted:
        raise KeyboardInterrupt


def call_with_conditions(
    fun: str, *args: Any, stacklevel: int = 2, **kwargs: Any
) -> tuple[Any, list[str]]:
    """Like :func:`call`, but also return R's warnings and messages as texts.

    The warnings and messages are re-issued as Python warnings as well.
    """
    with lock:
        _ensure()
        _state["console"] = []
        try:
            with _console(), _interruptible():
                out = _raw_call(fun, *args, **kwargs)
        except _state["ri"].embedded.RRuntimeError as exc:  # interrupts reach here
            if "interrupt" in str(exc).lower():
                raise KeyboardInterrupt from None
            raise RError(f"R failed in {fun}: {exc}") from None
    conditions = []
    for key, default in (("warnings", RWarning), ("messages", RMessage)):
        for text in np.atleast_1d(out.get(key, [])):
            cls = classify_warning(str(text))
            # reported at the first frame outside pylmer (the user's line), whatever
            # the depth of the call (``stacklevel`` is no longer needed for that)
            warn(str(text), default if cls is RWarning else cls)
            conditions.append(str(text))
    if out.get("interrupted"):
        raise KeyboardInterrupt
    if not out["ok"]:
        message = str(out["error"]).strip()
        exc_class = _ERROR_KINDS.get(str(out.get("kind", "")), RError)
        if exc_class is RError and "cannot allocate" in message:
            raise ROutOfMemoryError(
                f"R ran out of memory: {message}. The model's matrices do not fit in the "
                "memory available to R (a fixed-effect factor with many levels makes a dense "
                "model matrix of rows x levels: make it a random effect, or use fewer rows). "
                "Nothing was fitted; the R session is still usable",
                r_message=message,
                call=out.get("call"),
            )
        if exc_class is RError:
            raise RError(f"R error: {message}", r_message=message, call=out.get("call"))
        raise exc_class(message)
    return out["value"], conditions


def held() -> dict[str, int]:
    """Count what pylmer keeps alive in R for the handles and data references still in use.

    ``objects``: R objects behind live :class:`RObject` handles (fitted models);
    ``data``: data frames bound by live :class:`DataRef` s.  Both drop back once the
    Python objects are gone (released at the next R call, or here).  Python's cyclic
    garbage is collected first (a fitted model sits in a reference cycle until then).  Used
    by the soak benchmark and the tests to show that nothing is left behind.

    Returns
    -------
    dict
        ``{"objects": int, "data": int}`` (zeros before R has started).
    """
    if not started():
        return {"objects": 0, "data": 0}
    import gc

    gc.collect()
    with lock:
        _ensure()
        ri = _state["ri"]
        n_data = int(ri.baseenv["length"](_state["store"])[0])
        return {"objects": len(_objects), "data": n_data}


def r_versions() -> dict[str, str | None]:
    """Return the versions of R, lme4 and lmerTest (starting R if needed)."""
    value = call(".pylmer_versions")
    return {k: (None if v is None or v is pd.NA or v != v else str(v)) for k, v in value.items()}
