"""HttpImageFetcher: fetch image bytes over HTTP(S), safely.

- relative paths are joined to `cdn_base`; absolute URLs only to allowed hosts (plus the cdn_base host);
- every connection (each redirect hop's too) resolves its host once, inside the connection pool's network
  backend, refuses it if any address is not global (private, loopback, link-local, ...) unless the host is
  listed in `allow_private_hosts`, and connects to an address it checked: no second DNS answer can swap in an
  internal one (DNS rebinding). URLs keep their host name, so TLS verifies each host's own certificate and the
  pool never lends a connection made for one host to another on the same address;
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
import ssl
import typing
from collections.abc import Awaitable, Callable
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx

from app.config.settings import FetchSettings
from app.domain.errors import FetchFailed, FetchTimeout, ImageTooLarge, InvalidImage, UrlRefused
from app.ports.backends import FetchedImage
from app.vision.decode import looks_like_image

_REDIRECTS = {301, 302, 303, 307, 308}
# IPv6 prefixes that reach IPv4 hosts (NAT64, 6to4): Python counts them as global, they may lead anywhere.
_TRANSLATED = (
    ipaddress.ip_network("64:ff9b::/96"),
    ipaddress.ip_network("64:ff9b:1::/48"),
    ipaddress.ip_network("2002::/16"),
)


# IPv6 forms that embed an IPv4 address, which Python's is_global judges by the IPv6 prefix alone:
# IPv4-compatible (::a.b.c.d, deprecated) and IPv4-translated (::ffff:0:a.b.c.d, SIIT). No CDN lives there.
_EMBEDDING_IPV4 = (ipaddress.ip_network("::/96"), ipaddress.ip_network("::ffff:0:0:0/96"))


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if address.is_multicast:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped.is_global and not address.ipv4_mapped.is_multicast
        # site-local (fec0::/10) is deprecated, yet routed inside some networks
        if address.is_site_local or any(address in network for network in (*_TRANSLATED, *_EMBEDDING_IPV4)):
            return False
    return address.is_global


def shown(url: str) -> str:
    """A URL as errors and logs may show it: without its query, fragment or credentials, which may carry a signed
    URL's token, and at most 200 characters."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(an unparsable URL)"
    where = f"{parts.scheme}://{host}{port}{parts.path}" if parts.scheme else parts.path
    return (where if len(where) <= 200 else where[:197] + "...") + ("?…" if parts.query else "")


def _checked_parts(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL, or UrlRefused saying what is wrong with it: the schema allows any text, so
    a URL that cannot be parsed is refused for what it says, like one whose host is not allowed."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise UrlRefused("the image URL contains a control character")
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
        raise UrlRefused(f"the image URL is not valid: {exc}") from exc
    return parts.scheme, host.lower(), port or (443 if parts.scheme == "https" else 80)


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# host, port -> the addresses it resolves to (the system resolver; tests give their own)
Resolver = Callable[[str, int], Awaitable[list[str]]]


async def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchFailed(f"cannot resolve host {host!r}: {exc}") from exc
    return [str(info[4][0]).split("%", 1)[0] for info in infos]


class _CheckedNetwork(httpcore.AsyncNetworkBackend):
    """Resolves, checks and connects in one step, so the address checked is the address connected to."""

    def __init__(self, resolve: Resolver, private_ok: set[str]) -> None:
        self._resolve = resolve
        self._private_ok = private_ok
        self._sockets = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109  httpcore's interface
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        name = host.lower()
        addresses = [ipaddress.ip_address(a) for a in await self._resolve(name, port)]
        if not addresses:
            raise FetchFailed(f"host {name!r} has no address")
        if name not in self._private_ok and not all(_public(a) for a in addresses):
            # the address itself is not said: the answer would map the inside of the network for the caller
            raise UrlRefused(
                f"host {name!r} resolves to a non-public address; list it in allow_private_hosts to allow it"
            )
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._sockets.connect_tcp(str(address), port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109  httpcore's interface
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise UrlRefused("unix sockets are never fetched")

    async def sleep(self, seconds: float) -> None:
        await self._sockets.sleep(seconds)


class _CheckedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport over a pool whose every connection goes through _CheckedNetwork."""

    def __init__(self, network: _CheckedNetwork, ssl_context: ssl.SSLContext, max_connections: int) -> None:
        super().__init__(verify=ssl_context, trust_env=False)
        # httpx takes no network backend of its own; its pool is replaced by the same pool with ours.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context, max_connections=max_connections, network_backend=network
        )


class HttpImageFetcher:
    def __init__(
        self, settings: FetchSettings, resolve: Resolver | None = None, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self._settings = settings
        self._cdn_host = urlsplit(settings.cdn_base).hostname if settings.cdn_base else None
        self._cdn_port = _checked_parts(settings.cdn_base)[2] if settings.cdn_base else None
        self._ports = {p for p in settings.allowed_ports if p != "*"}
        self._any_port = "*" in settings.allowed_ports
        self._allowed = {h.lower() for h in settings.allowed_hosts}
        self._private_ok = {h.lower() for h in settings.allow_private_hosts}
        network = _CheckedNetwork(resolve or system_resolver, self._private_ok)
        context = ssl_context or httpx.create_ssl_context(trust_env=False)  # certifi's roots, as httpx by default
        transport = _CheckedTransport(network, context, settings.concurrency)
        self._client = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(
                connect=settings.connect_timeout_s,
                read=settings.read_timeout_s,
                write=settings.read_timeout_s,
                pool=settings.connect_timeout_s,
            ),
            follow_redirects=False,
            trust_env=False,
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
                raise UrlRefused(f"{shown(url)!r} is a relative path and no cdn_base is configured to join it to")
            url = urljoin(self._settings.cdn_base.rstrip("/") + "/", url.lstrip("/"))
        self._check_host(url)
        return url

    def _check_host(self, url: str) -> None:
        scheme, host, port = _checked_parts(url)
        parts = urlsplit(url)
        if scheme not in ("http", "https"):
            raise UrlRefused(f"only http and https URLs are fetched, not {scheme!r}")
        if not host:
            raise UrlRefused(f"{shown(url)!r} has no host")
        if parts.username or parts.password:
            raise UrlRefused("URLs with credentials are refused")
        if not (self._any_port or port in self._ports or (host == self._cdn_host and port == self._cdn_port)):
            raise UrlRefused(f"port {port} is not in allowed_ports (nor the cdn_base port)")
        if "*" in self._allowed or host in self._allowed or host == self._cdn_host or host in self._private_ok:
            return
        raise UrlRefused(f"host {host!r} is not in allowed_hosts (nor the cdn_base host)")

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
            raise FetchTimeout(f"fetching {shown(target)} took longer than {self._settings.total_timeout_s}s") from exc
        except httpx.TimeoutException as exc:
            raise FetchTimeout(f"fetching {shown(target)} timed out: {type(exc).__name__}") from exc
        except httpx.InvalidURL as exc:
            raise UrlRefused(f"the image URL is not valid: {exc}") from exc
        except httpx.HTTPError as exc:
            reason = str(exc).replace(target, shown(target))[:300]  # the library's words, without the URL's token
            raise FetchFailed(f"fetching {shown(target)} failed: {type(exc).__name__}: {reason}") from exc

    async def _get(self, url: str) -> bytes | str:
        """The body, or the Location of a redirect."""
        _checked_parts(url)
        response = await self._client.send(self._client.build_request("GET", url), stream=True)
        try:
            if response.status_code in _REDIRECTS and "location" in response.headers:
                return response.headers["location"]
            if response.status_code != 200:
                raise FetchFailed(f"the image host answered HTTP {response.status_code} for {shown(url)}")
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
                    raise InvalidImage(f"{shown(url)} is not an image (content sniffed from its first bytes)")
                chunks.append(chunk)
                size += len(chunk)
                if size > limit:
                    raise ImageTooLarge(f"the image is larger than {limit} bytes")
            return b"".join(chunks)
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()
