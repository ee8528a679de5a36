"""Domain errors. Each carries its HTTP status and a machine-readable code; one handler renders them.

`technical` errors are worth retrying (network, timeouts, a backend down); the others are logical: the same
input will fail the same way again.
"""

from __future__ import annotations


class AppError(Exception):
    status_code: int = 500
    code: str = "internal_error"
    technical: bool = False

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers  # sent with the HTTP answer (Retry-After)


class InvalidRequest(AppError):
    status_code = 422
    code = "invalid_request"


class UnsupportedMediaType(AppError):
    status_code = 415
    code = "unsupported_media_type"


class UrlRefused(AppError):
    status_code = 400
    code = "url_refused"


class FetchFailed(AppError):
    """The image host could not be reached or did not answer with the image."""

    status_code = 502
    code = "fetch_failed"
    technical = True


class FetchTimeout(FetchFailed):
    status_code = 504
    code = "fetch_timeout"


class ImageTooLarge(AppError):
    status_code = 413
    code = "image_too_large"


class UploadTooLarge(AppError):
    status_code = 413
    code = "upload_too_large"


class InvalidImage(AppError):
    status_code = 422
    code = "invalid_image"


class TooManyPixels(AppError):
    status_code = 422
    code = "too_many_pixels"


class ImageNotFound(AppError):
    status_code = 404
    code = "image_not_found"


class ImageRemoved(AppError):
    """The image was deleted or taken down (docs/removal.md): its row stays as a record, its bytes are gone."""

    status_code = 410
    code = "image_removed"


class SourceNotFound(AppError):
    status_code = 404
    code = "source_not_found"


class ImageNotRefetchable(AppError):
    """A stored image whose bytes we never kept and whose features are incomplete."""

    status_code = 409
    code = "image_not_refetchable"


class BackendUnavailable(AppError):
    status_code = 503
    code = "backend_unavailable"
    technical = True


class DatabaseUnavailable(BackendUnavailable):
    """The database failed (down, unreachable, or refused the statement)."""


class TransientConflict(DatabaseUnavailable):
    """A deadlock or lock wait timeout with another process: the same transaction, tried again, may pass."""


class CheckRaced(BackendUnavailable):
    """The image's candidates kept changing while it was checked (its match was removed meanwhile)."""

    code = "check_raced"


class CheckFailed(AppError):
    """Something unforeseen went wrong with this one image (a library's error, a bug). It fails that image
    alone, says what happened, and is retried like any technical failure."""

    status_code = 500
    code = "internal_error"
    technical = True


class ConfigurationError(Exception):
    """The service cannot start as configured; the message says what to change."""


class TooBusy(AppError):
    """More work is in flight than the process takes on; the caller should come back shortly."""

    status_code = 429
    code = "too_busy"


class Unauthorized(AppError):
    status_code = 401
    code = "unauthorized"


class Forbidden(AppError):
    """The caller is known but its key lacks the scope this needs."""

    status_code = 403
    code = "forbidden"


class ReviewConflict(AppError):
    """The image changed since the reviewer saw it (another decision, a re-check): nothing was written."""

    status_code = 409
    code = "review_conflict"


class NothingToUndo(AppError):
    status_code = 404
    code = "nothing_to_undo"


class RateLimited(AppError):
    """This key made more requests than its rate allows; Retry-After says when to come back."""

    status_code = 429
    code = "rate_limited"


class EmbedderBusy(BackendUnavailable):
    """The embedder's queue is full: a technical failure, retried later."""

    code = "embedder_busy"


class BackendAuthFailed(BackendUnavailable):
    """A cloud backend refused our credentials: fix the key; rows go to recalc meanwhile."""

    code = "backend_auth_failed"


class PartialEmbeddingFailure(Exception):
    """Some images of a batch could not be embedded; the others' vectors are kept (no call is paid twice)."""

    def __init__(self, vectors: list[object], errors: list[AppError | None]) -> None:
        super().__init__(f"{sum(e is not None for e in errors)} of {len(errors)} images could not be embedded")
        self.vectors = vectors
        self.errors = errors
