"""The front ends' files (widget, agent console, demo page), read once from the package, each with a
version (a hash of its content) that is its ETag."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from . import __version__

FILES = {  # name -> content type
    "widget.js": "application/javascript; charset=utf-8",
    "console.html": "text/html; charset=utf-8",
    "console.js": "application/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "demo.html": "text/html; charset=utf-8",
}
# Written into widget.js and console.js, so a page can tell which version it runs (AmoiqChat.version).
VERSION_MARK = "__AMOIQ_VERSION__"


@dataclass(frozen=True)
class Asset:
    """One file as it is served."""

    body: bytes
    content_type: str
    version: str

    @property
    def etag(self) -> str:
        """The quoted ETag."""
        return f'"{self.version}"'


def load_assets() -> dict[str, Asset]:
    """Read every front-end file of the package; its version is the package version and a content hash."""
    folder = resources.files(__package__) / "static"
    assets = {}
    for name, content_type in FILES.items():
        raw = (folder / name).read_bytes()
        version = f"{__version__}-{hashlib.sha256(raw).hexdigest()[:12]}"
        assets[name] = Asset(raw.replace(VERSION_MARK.encode(), version.encode()), content_type, version)
    return assets
