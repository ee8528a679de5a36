"""HttpImageFetcher: fetch image bytes over HTTP(S), safely.

- relative paths are joined to `cdn_base`; absolute URLs only to allowed hosts (plus the cdn_base host);
- every hop (redirects included) is resolved and refused if any address is not global (private, loopback,
  link-local, ...) unless its host is listed in `allow_private_hosts`; the connection then goes to the address
  that was checked (pinned), so a second DNS answer cannot swap in an internal one;
- a byte limit enforced while streaming, connect/read timeouts and a total deadline, bounded concurrency;
- the content is sniffed from its first bytes, never trusted from headers.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from app.config.settings import FetchSettings
from app.domain.errors import FetchFailed, FetchTimeout, ImageTooLarge, InvalidImage, UrlRefused
from app.ports.backends import FetchedImage
from app.vision.decode import looks_like_image

_REDIRECTS = {301, 302, 303, 307, 308}


class HttpImageFetcher:
    def __init__(self, settings: FetchSettings) -> None:
        self._settings = settings
        self._cdn_host = urlsplit(settings.cdn_base).hostname if settings.cdn_base else None
        self._allowed = {h.lower() for h in settings.allowed_hosts}
        self._private_ok = {h.lower() for h in settings.allow_private_hosts}
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(
                connect=settings.connect_timeout_s,
                read=settings.read_timeout_s,
                write=settings.read_timeout_s,
                pool=settings.connect_timeout_s,
            ),
            follow_redirects=False,
            trust_env=False,
            limits=httpx.Limits(max_connections=settings.concurrency),
            headers={"User-Agent": "imgdedup/0.1"},
        )
        self._slots = asyncio.Semaphore(settings.concurrency)

    def absolute_url(self, url: str) -> str:
        """Join a relative path to cdn_base and check the result is a URL we may fetch."""
        url = url.strip()
        if not url:
            raise UrlRefused("the image URL is empty")
        parts = urlsplit(url)
        if not parts.scheme:
            if not self._settings.cdn_base:
                raise UrlRefused(f"{url!r} is a relative path and no cdn_base is configured to join it to")
            url = urljoin(self._settings.cdn_base.rstrip("/") + "/", url.lstrip("/"))
        self._check_host(url)
        return url

    def _check_host(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise UrlRefused(f"only http and https URLs are fetched, not {parts.scheme!r}")
        host = (parts.hostname or "").lower()
        if not host:
            raise UrlRefused(f"{url!r} has no host")
        if parts.username or parts.password:
            raise UrlRefused("URLs with credentials are refused")
        if "*" in self._allowed or host in self._allowed or host == self._cdn_host or host in self._private_ok:
            return
        raise UrlRefused(f"host {host!r} is not in allowed_hosts (nor the cdn_base host)")

    async def _pinned_address(self, host: str, port: int) -> str:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise FetchFailed(f"cannot resolve host {host!r}: {exc}") from exc
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
        if host not in self._private_ok:
            for address in addresses:
                mapped = getattr(address, "ipv4_mapped", None) or address
                if not mapped.is_global:
                    raise UrlRefused(
                        f"host {host!r} resolves to the non-public address {address}; "
                        "list it in allow_private_hosts to allow it"
                    )
        if not addresses:
            raise FetchFailed(f"host {host!r} has no address")
        return str(addresses[0])

    async def fetch(self, url: str) -> FetchedImage:
        target = self.absolute_url(url)
        try:
            async with self._slots, asyncio.timeout(self._settings.total_timeout_s):
                for _ in range(self._settings.max_redirects + 1):
                    location = await self._get(target)
                    if isinstance(location, bytes):
                        return FetchedImage(data=location, url=target)
                    target = urljoin(target, location)
                    self._check_host(target)
                raise FetchFailed(f"more than {self._settings.max_redirects} redirects")
        except TimeoutError as exc:
            raise FetchTimeout(f"fetching {target} took longer than {self._settings.total_timeout_s}s") from exc
        except httpx.TimeoutException as exc:
            raise FetchTimeout(f"fetching {target} timed out: {type(exc).__name__}") from exc
        except httpx.HTTPError as exc:
            raise FetchFailed(f"fetching {target} failed: {type(exc).__name__}: {exc}") from exc

    async def _get(self, url: str) -> bytes | str:
        """The body, or the Location of a redirect."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = await self._pinned_address(host, port)
        literal = f"[{address}]" if ":" in address else address
        pinned = urlunsplit((parts.scheme, f"{literal}:{port}", parts.path or "/", parts.query, ""))
        headers = {"Host": parts.netloc.rsplit("@", 1)[-1]}
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        request = self._client.build_request("GET", pinned, headers=headers, extensions=extensions)
        response = await self._client.send(request, stream=True)
        try:
            if response.status_code in _REDIRECTS and "location" in response.headers:
                return response.headers["location"]
            if response.status_code != 200:
                raise FetchFailed(f"the image host answered HTTP {response.status_code} for {url}")
            limit = self._settings.max_bytes
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > limit:
                raise ImageTooLarge(f"the image is {declared} bytes; at most {limit} are accepted")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                if not chunks and not looks_like_image(chunk[:16]) and len(chunk) >= 16:
                    raise InvalidImage(f"{url} is not an image (content sniffed from its first bytes)")
                chunks.append(chunk)
                size += len(chunk)
                if size > limit:
                    raise ImageTooLarge(f"the image is larger than {limit} bytes")
            return b"".join(chunks)
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()
