"""The secret that signs the review page's session cookies: configured, or made once and kept in the data folder
(readable by this user alone), so sessions survive a restart."""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile

from app.config.settings import Settings
from app.domain.errors import ConfigurationError

# A secret shorter than this is not one this service made or would accept
_MIN_SECRET = 32


def session_cookie_name(secure: bool) -> str:
    # __Host-: the browser keeps it for this host alone, path /, and only if it came over HTTPS
    return "__Host-imgdedup_review" if secure else "imgdedup_review"


def session_secret(settings: Settings) -> str:
    configured = settings.api.session_secret
    if configured is not None and configured.get_secret_value():
        secret = configured.get_secret_value()
        where = "APP_API__SESSION_SECRET"
    else:
        path = settings.data_dir / "session.key"
        if not path.exists():
            _create_whole(path, secrets.token_urlsafe(48))
        secret = path.read_text().strip()
        where = str(path)
    if len(secret) < _MIN_SECRET:
        raise ConfigurationError(f"the session secret in {where} is shorter than {_MIN_SECRET} characters")
    return secret


def _create_whole(path: os.PathLike[str] | str, secret: str) -> None:
    """Written under another name, then linked into place: the file exists whole or not at all, and of two
    processes starting at once the first link wins and both read its secret."""
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=".session.", dir=directory)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secret)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):  # another process linked its own a moment ago
            os.link(temporary, path)
    finally:
        os.unlink(temporary)
