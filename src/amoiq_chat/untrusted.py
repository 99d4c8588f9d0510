"""What untrusted text may hold: the one rule behind `schemas.Str` (bodies, frames) and the check of
path parameters, query values and headers (`http.check_request_text`)."""
from __future__ import annotations

import re

# NUL (PostgreSQL cannot store it), the other C0 and C1 control characters, DEL, and lone
# surrogates (not encodable as UTF-8). Multi-line text (a message, a welcome message, an FAQ
# answer) keeps tab, LF and CR.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_CONTROL_MULTILINE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def control_problem(value: str, multiline: bool = False) -> str | None:
    """Say what is wrong with the characters of an untrusted string (None when nothing is)."""
    found = (_CONTROL_MULTILINE if multiline else _CONTROL).search(value)
    if found is None:
        return None
    return f"must not contain control characters (found U+{ord(found.group()):04X})"
