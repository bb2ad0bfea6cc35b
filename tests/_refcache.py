"""Reference values from plain R on the machine that runs the tests.

lme4's optimum moves by ~1e-4 between CPUs and BLAS builds, so a reference written on
another machine cannot be compared at 1e-6.  :func:`reference` runs a reference script
(``tests/reference*.R``, plain ``Rscript``, no pylmer code) once per machine and
caches what it writes under ``tests/.refcache/<script>-<key>/``; the key hashes the R
version, the versions of the R packages used, R's BLAS and LAPACK libraries, the platform
and the script's own text, so a change of any of them regenerates the values.  The key
also holds the CPU model and the BLAS thread settings (the thread variables and the CPUs
this process may run on): OpenBLAS with one thread or two moves lme4's InstEval optimum
by 1e-6 (74 against 75 deviance evaluations), and R in the tests runs with the same
settings as the reference scripts.

A reference script takes the output directory as its first argument and writes one JSON
file per case (``<name>.json``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "tests"
CACHE = Path(os.environ.get("PYLMER_REFCACHE", ROOT / "tests" / ".refcache"))

_FINGERPRINT_R = r"""
pk <- c("lme4", "Matrix", "lmerTest", "emmeans", "pbkrtest", "performance", "merTools",
        "glmmTMB", "TMB", "optimx", "dfoptim", "jsonlite", "numDeriv", "MASS", "statmod",
        "broom.mixed", "reformulas", "minqa", "nloptr")
v <- vapply(pk, function(p) tryCatch(as.character(utils::packageVersion(p)),
                                      error = function(e) "none"), "")
si <- utils::sessionInfo()
cat(R.version.string, R.version$platform, si$BLAS, si$LAPACK,
    tryCatch(extSoftVersion()[["BLAS"]], error = function(e) ""),
    paste(names(v), v), sep = "\n")
"""


@cache
def fingerprint() -> str:
    """Return the text that identifies this machine's R, R packages, BLAS and platform."""
    out = subprocess.run(
        ["Rscript", "-e", _FINGERPRINT_R], capture_output=True, text=True, check=True
    )
    threads = " ".join(
        f"{var}={os.environ.get(var, '')}"
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "GOTO_NUM_THREADS")
    )
    return "\n".join(
        [
            out.stdout,
            os.uname().machine + " " + os.uname().sysname,
            _cpu_model(),
            threads,
            f"cpus={len(os.sched_getaffinity(0))}",
        ]
    )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line
    except OSError:
        pass
    return ""


def _path(script: str) -> Path:
    """The reference script ``script`` (it lives under tests/)."""
    return SCRIPTS / script


def _key(script: str) -> str:
    text = _path(script).read_bytes()
    digest = hashlib.sha256(fingerprint().encode() + b"\0" + text).hexdigest()
    return digest[:16]


@cache
def directory(script: str) -> Path:
    """Return the cache directory of ``script``, running it first when it is absent."""
    target = CACHE / f"{Path(script).stem}-{_key(script)}"
    if (target / ".complete").exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{Path(script).stem}-", dir=CACHE))
    proc = subprocess.run(
        ["Rscript", str(_path(script)), str(tmp)], capture_output=True, text=True, cwd=ROOT
    )
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(
            f"Rscript {_path(script).relative_to(ROOT)} failed ({proc.returncode}):\n"
            + proc.stderr[-3000:]
        )
    (tmp / ".complete").write_text(fingerprint())
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def reference(script: str, name: str) -> dict:
    """Return the JSON ``name`` (without ``.json``) written by ``tests/script``."""
    path = directory(script) / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"tests/{script} wrote no {path.name} (in {path.parent})")
    return json.loads(path.read_text())
