"""HttpImageFetcher: fetch image bytes over HTTP(S), safely.

- relative paths are joined to `cdn_base`; absolute URLs only to allowed hosts (plus the cdn_base host);
- every hop (redirects included) is resolved and refused if any address is not global (private, loopback,
  link-local, ...) unless its host is listed in `allow_private_hosts`; the connection then goes to the address
  that was checked (pinned), so a second DNS answer cannot swap in an internal one;
- only unencoded bodies (`Accept-Encoding: identity`; a compressed answer is refused), so the byte limit, enforced
  while streaming, counts the bytes that are decoded: a small gzip bomb cannot grow the process;
- connect/read timeouts and a total deadline that includes waiting for one of the bounded fetch slots;
- a URL that cannot be parsed (a port out of range, an empty or over-long DNS label, a control character) is
  the request's own error, never the batch's;
- the content is sniffed from its first bytes, never trusted from headers.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from app.config.settings import FetchSettings
from app.domain.errors import FetchFailed, FetchTimeout, ImageTooLarge, InvalidImage, InvalidRequest, UrlRefused
from app.ports.backends import FetchedImage
from app.vision.decode import looks_like_image

_REDIRECTS = {301, 302, 303, 307, 308}
# IPv6 prefixes that reach IPv4 hosts (NAT64, 6to4): Python counts them as global, they may lead anywhere.
_TRANSLATED = (
    ipaddress.ip_network("64:ff9b::/96"),
    ipaddress.ip_network("64:ff9b:1::/48"),
    ipaddress.ip_network("2002::/16"),
)


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped.is_global
        if any(address in network for network in _TRANSLATED):
            return False
    return address.is_global


def _checked_parts(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL, or InvalidRequest saying what is wrong with it."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise InvalidRequest("the image URL contains a control character")
    try:
        parts = urlsplit(url)
        port = parts.port
        host = parts.hostname or ""
        if host and not _is_ip_literal(host):
            labels = host.rstrip(".").split(".")
            if any(not label or len(label) > 63 for label in labels):
                raise ValueError(f"the host {host!r} has an empty label or one longer than 63 characters")
            host.encode("idna")
    except (ValueError, UnicodeError) as exc:
        raise InvalidRequest(f"the image URL is not valid: {exc}") from exc
    return parts.scheme, host.lower(), port or (443 if parts.scheme == "https" else 80)


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


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
            headers={"User-Agent": "imgdedup/0.1", "Accept-Encoding": "identity"},
        )
        self._slots = asyncio.Semaphore(settings.concurrency)

    def absolute_url(self, url: str) -> str:
        """Join a relative path to cdn_base and check the result is a URL we may fetch."""
        url = url.strip()
        if not url:
            raise UrlRefused("the image URL is empty")
        scheme, _, _ = _checked_parts(url)  # a relative path is checked before it is joined, too
        if not scheme:
            if not self._settings.cdn_base:
                raise UrlRefused(f"{url!r} is a relative path and no cdn_base is configured to join it to")
            url = urljoin(self._settings.cdn_base.rstrip("/") + "/", url.lstrip("/"))
        self._check_host(url)
        return url

    def _check_host(self, url: str) -> None:
        scheme, host, _ = _checked_parts(url)
        parts = urlsplit(url)
        if scheme not in ("http", "https"):
            raise UrlRefused(f"only http and https URLs are fetched, not {scheme!r}")
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
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
        if host not in self._private_ok and not all(_public(a) for a in addresses):
            # the address itself is not said: the answer would map the inside of the network for the caller
            raise UrlRefused(
                f"host {host!r} resolves to a non-public address; list it in allow_private_hosts to allow it"
            )
        if not addresses:
            raise FetchFailed(f"host {host!r} has no address")
        return str(addresses[0])

    async def fetch(self, url: str) -> FetchedImage:
        target = self.absolute_url(url)
        try:
            # the deadline runs while waiting for a slot too: a queue of slow hosts cannot hold a request forever
            async with asyncio.timeout(self._settings.total_timeout_s), self._slots:
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
        except httpx.InvalidURL as exc:
            raise InvalidRequest(f"the image URL is not valid: {exc}") from exc
        except httpx.HTTPError as exc:
            raise FetchFailed(f"fetching {target} failed: {type(exc).__name__}: {exc}") from exc

    async def _get(self, url: str) -> bytes | str:
        """The body, or the Location of a redirect."""
        parts = urlsplit(url)
        _, host, port = _checked_parts(url)
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
            encoding = response.headers.get("content-encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                raise InvalidImage(f"the image host sent a {encoding}-encoded body; only unencoded images are fetched")
            limit = self._settings.max_bytes
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > limit:
                raise ImageTooLarge(f"the image is {declared} bytes; at most {limit} are accepted")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_raw():  # as sent: nothing is decompressed behind the limit's back
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
