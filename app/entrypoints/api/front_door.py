"""What every request meets before a route reads its body: its caller authenticated (for the routes that take a
key), its body capped by route, and the headers that keep the pages out of other sites' frames.

FastAPI parses a body before it runs the dependencies that check the key, so a route's own dependency would let
anyone make the service read and parse megabytes first; here a request without a valid key costs one dict lookup.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config.settings import is_loopback_host
from app.domain.errors import AppError, UploadTooLarge
from app.entrypoints.api.access import Access
from app.entrypoints.api.errors import error_body

_EVERYWHERE = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
# The review page: its own inline script and styles, its own images, forms to itself, never in a frame.
_PAGE_POLICY = (
    b"default-src 'none'; img-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_API_POLICY = b"default-src 'none'; frame-ancestors 'none'"


def _hostname(authority: str) -> str:
    """The host of a Host header's `host[:port]` (brackets of an IPv6 literal dropped)."""
    return urlsplit(f"//{authority}").hostname or ""


def keyless_refusal(scope: Scope) -> str | None:
    """Why a request may not be served as this machine's own without a key, or None when it may: it came over
    loopback, names a loopback host (a DNS-rebinding page names its own), and is not a request a web page of
    another origin made the browser send."""
    client, server = scope.get("client"), scope.get("server")
    if client and not is_loopback_host(str(client[0])) or server and not is_loopback_host(str(server[0])):
        return "it did not come over loopback"
    headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
    host = headers.get("host")
    if host is not None and not is_loopback_host(_hostname(host)):
        return "its Host header does not name this machine"
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return f"a web page of another origin sent it (Sec-Fetch-Site: {site})"
    origin = headers.get("origin")
    if origin is not None:
        parsed = urlsplit(origin)
        if host is None or parsed.netloc.lower() != host.lower() or not is_loopback_host(parsed.hostname or ""):
            return "a web page of another origin sent it (Origin)"
    return None


# What anyone may ask without a key, since it tells nothing about the images; and the review page, which signs
# its reviewers in with a key and then knows them by its cookie. Every other path takes a key at the door, so a
# route added later is closed until it is listed here (tests/entrypoints/api/test_contract.py holds this list to
# the schema).
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect"})
PAGE_PREFIX = "/review"


def _is_page(path: str) -> bool:
    return path == PAGE_PREFIX or path.startswith(PAGE_PREFIX + "/")


def takes_a_key(path: str) -> bool:
    return path not in OPEN_PATHS and not _is_page(path)


class FrontDoor:
    def __init__(
        self,
        app: ASGIApp,
        max_upload_bytes: int,
        max_body_bytes: int,
        upload_paths: frozenset[str],
    ) -> None:
        self.app = app
        self._max_upload = max_upload_bytes
        self._max_body = max_body_bytes
        self._upload_paths = upload_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_security_headers(send, scope["path"])
        # this request's own copy of the lifespan state: what is learnt of its caller is never another request's
        # (uvicorn copies it per request; not every server does)
        state = scope["state"] = dict(scope.get("state", {}))
        access: Access | None = state.get("access")
        if access is not None and takes_a_key(scope["path"]):
            authorization = next((v for k, v in scope["headers"] if k == b"authorization"), None)
            try:
                state["caller"] = await access.caller(
                    None if authorization is None else authorization.decode("latin-1"), keyless_refusal(scope)
                )
            except AppError as exc:
                await _refuse(exc, scope, receive, send)
                return
        limit = self._max_upload if scope["path"] in self._upload_paths else self._max_body
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > limit:
            too_large = UploadTooLarge(f"the request body is {int(declared)} bytes; at most {limit} are accepted here")
            await _refuse(too_large, scope, receive, send)
            return
        if scope["path"] in self._upload_paths:  # the route streams its upload and answers an overflow itself
            await self.app(scope, _counting(receive, limit), send)
            return
        body = await _read_at_most(receive, limit)  # small: read here, so an overflow is a 413 whoever parses it
        if body is None:
            await _refuse(
                UploadTooLarge(f"the request body exceeds {limit} bytes, the most accepted here"), scope, receive, send
            )
            return
        await self.app(scope, _replay(body, receive), send)


async def _refuse(error: AppError, scope: Scope, receive: Receive, send: Send) -> None:
    """An answer before the app: the same JSON {code, message} and status the one error handler gives."""
    await JSONResponse(error_body(error.code, error.message), error.status_code, error.headers)(scope, receive, send)


async def _read_at_most(receive: Receive, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)  # the client went away: the route sees an empty body
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > limit:
            return None
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, then: Receive) -> Receive:
    """The body read once, then whatever the connection says next (a disconnect)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return await then()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _counting(receive: Receive, limit: int) -> Receive:
    """A body that streams past its limit (chunked, no Content-Length) stops the route reading it."""
    seen = 0

    async def counting_receive() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                # Raised inside the route's body parsing, so the one error handler renders it.
                raise UploadTooLarge(f"the request body exceeds {limit} bytes")
        return message

    return counting_receive


def _with_security_headers(send: Send, path: str) -> Send:
    policy = _PAGE_POLICY if _is_page(path) else _API_POLICY

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"content-security-policy"]
            message["headers"] = [*headers, *_EVERYWHERE, (b"content-security-policy", policy)]
        await send(message)

    return sending
