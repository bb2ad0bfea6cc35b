"""The tests under tests/unit/ need no R: each fails if it starts R.

Run them alone with ``pytest tests/unit`` (``make test-fast``): seconds, no R needed.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pylmer.r import session as _r

# the helpers of tests/ (e.g. _refcache) stay importable from here
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


@pytest.fixture(autouse=True)
def _no_r() -> Iterator[None]:
    before = _r.started()
    yield
    if not before:
        assert not _r.started(), "a unit test started R: it belongs in tests/, not tests/unit/"
