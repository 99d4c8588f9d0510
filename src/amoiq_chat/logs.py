"""Logging set-up: text or JSON lines (LOG_FORMAT), with credentials scrubbed from every line.

Access lines never carry a query string's values (the agent's token arrives in one), except a
few harmless ones; and whatever a line holds, JWTs, API keys, webhook secrets and password or
userHash fields are replaced by `[redacted]` before it is written.
"""
from __future__ import annotations

import json
import logging
import re
import sys
import time
from urllib.parse import parse_qsl, quote

REDACTED = "[redacted]"
# Query parameters whose values are shown in access lines; every other value is redacted.
SHOWN_QUERY = frozenset({"since", "page", "limit", "before", "tenantId", "sessionId"})
SECRETS = re.compile(
    r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"  # a JWT (header and claims are base64 JSON)
    r"|\b(?:pk|sk)_[A-Za-z0-9_-]{8,}"  # an API key
    r"|\bwhsec_[A-Za-z0-9+/=_-]{8,}"  # a webhook signing secret
    r"|(?i:(?<=password[\"']: [\"'])|(?<=userHash[\"']: [\"'])|(?<=token=))(?!\[redacted\])[^\"'&\s\\]+")
# Attributes of a LogRecord that are not the caller's `extra`.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def scrub(text: str) -> str:
    """Replace anything that looks like a credential."""
    return SECRETS.sub(REDACTED, text)


def redact_query(query_string: str) -> str:
    """A query string with the values of all but a few harmless parameters replaced."""
    if not query_string:
        return ""
    pairs = parse_qsl(query_string, keep_blank_values=True)
    return "&".join(f"{quote(k)}={quote(v) if k in SHOWN_QUERY else REDACTED}" for k, v in pairs)


class TextFormatter(logging.Formatter):
    """`time level logger: message`, scrubbed (the record's extra fields are for JSON lines)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """The scrubbed line."""
        return scrub(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the record's extra fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        """The scrubbed JSON line."""
        body = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
                "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        body.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return scrub(json.dumps(body, default=str))


def setup_logging(level: str, fmt: str = "text") -> None:
    """Send every logger's records to stderr in `fmt` (text or json), at `level`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
