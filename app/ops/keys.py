"""API key management behind `python -m app keys add|list|revoke` (and the bind policy's question: any keys?)."""

from __future__ import annotations

from app.domain.access import ApiKey, check_key_name, hash_key, new_key, parse_scopes
from app.domain.errors import InvalidRequest
from app.ports.persistence import UnitsOfWork


async def add_key(units: UnitsOfWork, name: str, scopes: str, rate_per_minute: int | None = None) -> str:
    """Store a new key and return it: the only time it is seen, since only its hash is kept."""
    check_key_name(name)
    wanted = parse_scopes(scopes)
    if rate_per_minute is not None and rate_per_minute < 1:
        raise InvalidRequest("a rate is at least 1 request per minute")
    key = new_key()
    async with units() as uow:
        if not await uow.keys.add(name, hash_key(key), wanted, rate_per_minute):
            raise InvalidRequest(f"a key named {name!r} exists (revoked keys keep their names): choose another")
        await uow.commit()
    return key


async def list_keys(units: UnitsOfWork) -> list[ApiKey]:
    async with units() as uow:
        return await uow.keys.all()


async def revoke_key(units: UnitsOfWork, name: str) -> bool:
    async with units() as uow:
        revoked = await uow.keys.revoke(name)
        await uow.commit()
    return revoked


async def any_active_key(units: UnitsOfWork) -> bool:
    async with units() as uow:
        return bool(await uow.keys.active())
