"""The package's structure: imports point down, R scripts are listed, no test script ships."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pylmer.r import session as _r

ROOT = Path(__file__).resolve().parents[2]


def test_no_import_cycles():
    tool = ROOT.parent / "shared" / "tools" / "import_cycles.py"
    if not tool.exists():
        pytest.skip("the import-cycle checker (../shared/tools) is not beside this clone")
    out = subprocess.run(
        [sys.executable, str(tool)], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout


def test_every_r_script_is_sourced_or_a_program():
    found = {p.name for p in _r.script_dir().glob("*.R")}
    listed = set(_r.SCRIPTS) | set(_r.PROGRAMS)
    assert found == listed, (sorted(found - listed), sorted(listed - found))
    assert _r.SCRIPTS[0] == "bridge.R"
    assert not any(name.startswith("reference") for name in found)


def test_reference_scripts_live_under_tests():
    assert sorted((ROOT / "tests").glob("reference*.R"))
    assert not list((ROOT / "r_scripts").glob("reference*.R"))


def test_wheel_ships_only_the_r_scripts_folder():
    tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python 3.11")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"]["pylmer.r_scripts"] == "r_scripts"
    assert "tests" not in " ".join(config["packages"])


def test_import_pylmer_starts_no_r():
    code = "import pylmer, pylmer.r.session as s; print(s.started())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_import_pylmer_imports_no_scikit_learn_until_used():
    """lmer users do not pay for scikit-learn; the estimators and the error classes built
    on scikit-learn's come on first use, and are then scikit-learn's subclasses."""
    code = (
        "import sys, pickle, pylmer\n"
        "print('sklearn' in sys.modules)\n"
        "from sklearn.exceptions import ConvergenceWarning, NotFittedError\n"
        "print(issubclass(pylmer.NotFittedError, NotFittedError),"
        " issubclass(pylmer.LmerConvergenceWarning, ConvergenceWarning),"
        " pylmer.MixedMLRegressor.__name__,"
        " pickle.loads(pickle.dumps(pylmer.NotFittedError('x'))).__class__"
        " is pylmer.errors.NotFittedError)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True", "True", "MixedMLRegressor", "True"]
