"""SQL of the application: one module per group of tables, functions taking the connection first."""
from __future__ import annotations

from typing import Any, Iterable, Mapping


def assignments(changes: Mapping[str, Any], columns: Iterable[str]) -> str:
    """`a = %(a)s, b = %(b)s` for the changed columns, each checked against a whitelist."""
    allowed = frozenset(columns)
    unknown = set(changes) - allowed
    if unknown:
        raise ValueError(f"not updatable: {', '.join(sorted(unknown))}")
    return ", ".join(f"{name} = %({name})s" for name in changes)


def column_list(values: Mapping[str, Any], columns: Iterable[str]) -> tuple[str, str]:
    """(`a, b`, `%(a)s, %(b)s`) for an INSERT of the given columns, checked against a whitelist."""
    assignments(values, columns)  # the same whitelist check
    return ", ".join(values), ", ".join(f"%({name})s" for name in values)
