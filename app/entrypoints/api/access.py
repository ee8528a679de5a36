"""Who is calling: the API key in `Authorization: Bearer <key>`, its scopes, and its rate.

With no keys in the database the service is open, but only when it listens on loopback alone (the bind policy
in `Settings.listens_on_loopback_only`); `serve` refuses any other address without keys. Keys are read again every
`keys_refresh_seconds`, so a key added or revoked by `python -m app keys` takes effect within that time, and
an unknown key costs no query.
"""

from __future__ import annotations

import asyncio
import math
import time

from aiolimiter import AsyncLimiter

from app.config.settings import ApiSettings
from app.domain.access import LOCAL_CALLER, ApiKey, Caller, hash_key
from app.domain.errors import Forbidden, RateLimited, Unauthorized
from app.ports.persistence import UnitsOfWork

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


class KeyRing:
    def __init__(self, units: UnitsOfWork, refresh_seconds: float, open_when_empty: bool) -> None:
        self._units = units
        self._refresh_seconds = refresh_seconds
        self._open_when_empty = open_when_empty
        self._keys: dict[str, ApiKey] = {}
        self._read_at = -math.inf
        self._reading = asyncio.Lock()

    async def _current(self) -> dict[str, ApiKey]:
        if time.monotonic() - self._read_at >= self._refresh_seconds:
            async with self._reading:
                if time.monotonic() - self._read_at >= self._refresh_seconds:
                    async with self._units() as uow:
                        self._keys = await uow.keys.active()
                    self._read_at = time.monotonic()
        return self._keys

    async def caller(self, authorization: str | None, keyless_refusal: str | None) -> Caller:
        """The caller of a request with this Authorization header (None: no header); `keyless_refusal` says why the
        request may not be taken for this machine's own (None: it may)."""
        keys = await self._current()
        # Open only while no key exists and none is presented: a key that is presented is always checked, so a
        # revoked one never works.
        if not keys and authorization is None:
            if self._open_when_empty and keyless_refusal is None:
                return LOCAL_CALLER
            if self._open_when_empty:
                raise Forbidden(
                    f"no API keys exist, so the service answers only this machine's own requests, and this one is "
                    f"not: {keyless_refusal}"
                )
            raise Unauthorized(
                "no API keys exist and the service listens beyond loopback: add one with `python -m app keys add`",
                headers=_CHALLENGE,
            )
        if authorization is None:
            raise Unauthorized("an API key is required: Authorization: Bearer <key>", headers=_CHALLENGE)
        scheme, _, presented = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise Unauthorized("send the API key as Authorization: Bearer <key>", headers=_CHALLENGE)
        key = keys.get(hash_key(presented.strip()))
        if key is None:
            raise Unauthorized("the API key is not valid (unknown or revoked)", headers=_CHALLENGE)
        return Caller.of(key)

    async def caller_named(self, name: str) -> Caller | None:
        """The caller a review sign-in names, while its key is still valid."""
        key = next((k for k in (await self._current()).values() if k.name == name), None)
        return Caller.of(key) if key else None


class RateLimits:
    """A leaky bucket per key (aiolimiter): a burst of up to a minute's rate, then the rate itself."""

    def __init__(self, default_per_minute: int) -> None:
        self._default = default_per_minute
        self._buckets: dict[tuple[str, int], AsyncLimiter] = {}

    async def admit(self, caller: Caller) -> None:
        if caller.local:
            return
        rate = caller.rate_per_minute or self._default
        bucket = self._buckets.setdefault((caller.name, rate), AsyncLimiter(rate, 60))
        if not bucket.has_capacity():
            # the bucket drains one request every 60/rate seconds
            wait = max(1, math.ceil(60 / rate))
            raise RateLimited(
                f"the key {caller.name!r} is over its {rate} requests per minute", headers={"Retry-After": str(wait)}
            )
        await bucket.acquire()  # there is room: this does not wait


class Access:
    def __init__(self, units: UnitsOfWork, settings: ApiSettings, open_when_empty: bool) -> None:
        self.keys = KeyRing(units, settings.keys_refresh_seconds, open_when_empty)
        self.rates = RateLimits(settings.rate_limit_per_minute)

    async def caller(self, authorization: str | None, keyless_refusal: str | None) -> Caller:
        caller = await self.keys.caller(authorization, keyless_refusal)
        await self.rates.admit(caller)
        return caller
