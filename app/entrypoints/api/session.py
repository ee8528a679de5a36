"""The secret that signs the review page's session cookies: configured, or made once and kept in the data folder
(readable by this user alone), so sessions survive a restart."""

from __future__ import annotations

import os
import secrets

from app.config.settings import Settings


def session_secret(settings: Settings) -> str:
    if settings.api.session_secret is not None and settings.api.session_secret.get_secret_value():
        return settings.api.session_secret.get_secret_value()
    path = settings.data_dir / "session.key"
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it a moment ago
            pass
        else:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
    return path.read_text().strip()
