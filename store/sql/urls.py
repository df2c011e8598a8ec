"""Which stores are PostgreSQL databases, and how their URLs are shown."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

URL_SCHEMES = ("postgresql://", "postgres://")


def is_url(location: str | Path) -> bool:
    """A PostgreSQL connection URI (libpq's), rather than a file's path."""
    return isinstance(location, str) and location.startswith(URL_SCHEMES)


def redact(url: str) -> str:
    """A URL as messages show it: all but a password (the query string too: a search_path in its
    options tells two stores of one database apart)."""
    try:
        parts = urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
        netloc = f"{parts.username}@{host}" if parts.username else host
        query = "&".join(p for p in parts.query.split("&") if not p.lower().startswith("password="))
        return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    except ValueError:
        return "the PostgreSQL URL"
