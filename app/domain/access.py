"""Who may do what: API keys, their scopes, and the caller a request was made by.

A key is shown once when it is made; only its SHA-256 is stored. The keys are long random tokens, so a fast
hash is enough (there is nothing to brute-force from a dictionary) and a lookup costs one dict access.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from app.domain.errors import Forbidden, InvalidRequest

KEY_PREFIX = "imgd_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class Scope(StrEnum):
    CHECK = "check"  # verdicts that store nothing (register=false)
    REGISTER = "register"  # store images, re-decide a stored one by image_id/source_id
    READ = "read"  # GET /images, /stats
    ADMIN = "admin"  # /recalc and other maintenance
    REVIEW = "review"  # settle review verdicts


# A scope that includes others: registering is a check that also stores.
_INCLUDES: dict[Scope, frozenset[Scope]] = {Scope.REGISTER: frozenset({Scope.CHECK})}


def parse_scopes(text: str | list[str]) -> frozenset[Scope]:
    names = text.split(",") if isinstance(text, str) else text
    wanted = [name.strip().lower() for name in names if name.strip()]
    unknown = sorted(set(wanted) - {scope.value for scope in Scope})
    if unknown or not wanted:
        problem = f"unknown scope {', '.join(unknown)}" if unknown else "give at least one scope"
        raise InvalidRequest(f"{problem} (the scopes: {', '.join(scope.value for scope in Scope)})")
    return frozenset(Scope(name) for name in wanted)


def check_key_name(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidRequest("a key name is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return name


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str | bytes) -> str:
    data = key if isinstance(key, bytes) else key.encode("utf-8", "surrogateescape")
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class ApiKey:
    name: str
    scopes: frozenset[Scope]
    created_at: datetime
    revoked_at: datetime | None = None
    # Requests per minute for this key; None: the service's default.
    rate_per_minute: int | None = None


@dataclass(frozen=True, slots=True)
class Caller:
    """Who made a request: a key's name and scopes, or the local caller when no keys exist (loopback only)."""

    name: str
    scopes: frozenset[Scope]
    rate_per_minute: int | None = None
    local: bool = False

    @classmethod
    def of(cls, key: ApiKey) -> Caller:
        return cls(name=key.name, scopes=key.scopes, rate_per_minute=key.rate_per_minute)

    def can(self, scope: Scope) -> bool:
        return scope in self.scopes or any(scope in _INCLUDES.get(held, ()) for held in self.scopes)

    def require(self, scope: Scope, why: str = "") -> None:
        if not self.can(scope):
            held = ", ".join(sorted(self.scopes)) or "none"
            raise Forbidden(f"the key {self.name!r} lacks the {scope.value!r} scope{why} (it has: {held})")


LOCAL_CALLER = Caller(name="local", scopes=frozenset(Scope), local=True)
