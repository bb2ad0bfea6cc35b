"""Shared fixtures: the tests need a working R with lme4 (``make test`` installs it)."""

from __future__ import annotations

import pytest

import pylmer
from pylmer import _r


@pytest.fixture(scope="session")
def r_session() -> None:
    """Start R once; a missing R or lme4 is a failure, not a skip (CI must not pass empty)."""
    try:
        _r.call(".pylmer_versions")
    except pylmer.RNotAvailableError as exc:
        pytest.fail(f"R with lme4 is required for the tests: {exc}")
