"""Recognise database errors that a retry of the same transaction cures."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError

# MySQL/MariaDB: 1213 deadlock, 1205 lock wait timeout; SQLite: "database is locked".
_MYSQL_RETRYABLE = {1205, 1213}


def is_transient_conflict(exc: BaseException) -> bool:
    if not isinstance(exc, DBAPIError):
        return False
    args = getattr(exc.orig, "args", ())
    if args and isinstance(args[0], int) and args[0] in _MYSQL_RETRYABLE:
        return True
    return "database is locked" in str(exc.orig)
