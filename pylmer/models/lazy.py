"""Result tables computed on first access, once.

A fitted model's results are plain pandas; the few that cost real time and that many
users never read (the conditional SDs of the random effects) are a :class:`LazyTables`
until first read.  It behaves as a read-only mapping; pickling or deep-copying it
computes it first and stores a plain ``dict``, so a pickled model never needs R (or a
refit) to give them back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

__all__ = ["LazyTables"]


class LazyTables(Mapping[str, Any]):
    """A read-only mapping whose content ``compute()`` gives on first access.

    ``compute`` is attached after construction (:meth:`bind`): the results container is
    built before the model that can compute it.
    """

    def __init__(self) -> None:
        self._compute: Callable[[], Mapping[str, Any]] | None = None
        self._value: dict[str, Any] | None = None

    def bind(self, compute: Callable[[], Mapping[str, Any]]) -> None:
        """Set the function that computes the tables (called at most once)."""
        self._compute = compute

    @property
    def computed(self) -> bool:
        """Whether the tables have been computed."""
        return self._value is not None

    def _get(self) -> dict[str, Any]:
        if self._value is None:
            if self._compute is None:
                raise RuntimeError("these results are not bound to a model")
            self._value = dict(self._compute())
            self._compute = None  # drops the reference to the model
        return self._value

    def __getitem__(self, key: str) -> Any:
        return self._get()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())

    def __repr__(self) -> str:
        return repr(self._get())

    def __reduce__(self) -> tuple[Any, ...]:
        # a plain dict in pickles and deep copies: no model or R needed to read it back
        return (dict, (self._get(),))
