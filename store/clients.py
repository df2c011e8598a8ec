"""The verification service's clients: the systems (web apps, VPN concentrators, RADIUS
front-ends) allowed to ask whether a code is right, each with an API key of its own.

A key is 256 random bits, shown once when made; the store keeps its SHA-256 (a key that random
needs no slow hash: nothing can be guessed from the digest), so a copied store gives no working
key. A client may be bound to source addresses (networks in CIDR form)."""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import re
import secrets
import string
from dataclasses import dataclass
from datetime import UTC, datetime

from .errors import InvalidInput

RADIUS_PASSWORD, RADIUS_UNSIGNED = "password", "unsigned"  # the words of clients.radius_options
KEY_PREFIX = "mfak_"  # says what the string is, in a config file or a leak scanner's report
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Client:
    name: str
    sources: tuple[Network, ...]  # empty: from anywhere
    created_at: datetime
    revoked_at: datetime | None = None
    radius: bool = False  # has a RADIUS shared secret (kept sealed under the key file)
    radius_password: bool = False  # its RADIUS User-Password is the user's password and code, not the code alone
    radius_unsigned: bool = False  # its Access-Requests may lack a Message-Authenticator (older NASes)

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def allows(self, address: str | None) -> bool:
        """Whether a request from `address` may use this client's key."""
        if not self.sources:
            return True
        try:
            ip = ipaddress.ip_address((address or "").split("%")[0])
        except ValueError:
            return False  # a Unix socket or no address: only an unbound client
        ip = getattr(ip, "ipv4_mapped", None) or ip
        return any(ip in network for network in self.sources)


_SECRET_ALPHABET = string.ascii_letters + string.digits


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def clean_client_name(name: str) -> str:
    name = name.strip()
    if not _NAME.fullmatch(name):
        raise InvalidInput("a client's name is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return name


def parse_sources(sources: list[str] | tuple[str, ...]) -> tuple[Network, ...]:
    networks = []
    for source in sources:
        try:
            networks.append(ipaddress.ip_network(source.strip(), strict=False))
        except ValueError:
            raise InvalidInput(f"not an address or network: {source!r} (e.g. 10.0.0.5 or 10.0.0.0/24)") from None
    return tuple(networks)


def new_radius_secret() -> str:
    """32 letters and digits (190 bits; RFC 2865 asks for at least 16 characters): nothing that a
    NAS's form, a config file's quoting or a command line (a leading '-') could take otherwise."""
    return "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(32))


@functools.lru_cache(maxsize=1024)
def client_from_row(row: tuple) -> Client:
    """A row of the clients table (store.sql's COLUMNS["clients"]). Remembered: the service reads
    its client's row for every check, and parsing its networks cost more than the read."""
    name, _, sources, created_at, revoked_at, radius_secret, radius_options = row
    options = radius_options.split()
    return Client(
        name,
        parse_sources(sources.split()),
        datetime.fromtimestamp(created_at, UTC),
        None if revoked_at is None else datetime.fromtimestamp(revoked_at, UTC),
        radius_secret is not None,
        RADIUS_PASSWORD in options,
        RADIUS_UNSIGNED in options,
    )
