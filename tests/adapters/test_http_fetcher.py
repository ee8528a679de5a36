"""The fetcher on real sockets: TLS verifies each host's own certificate even when two hosts share one address
(the pool never lends host A's connection to host B), and a DNS answer that changes cannot redirect a
connection to an internal address (the address checked is the address connected to)."""

from __future__ import annotations

import contextlib
import http.server
import ssl
import threading
from collections.abc import Iterator

import pytest
import trustme

from app.adapters.http_fetcher import HttpImageFetcher
from app.config.settings import FetchSettings
from app.domain.errors import FetchFailed, UrlRefused
from testkit.images import jpeg, photo

IMAGE = jpeg(photo("b0575"))


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a connection stays in the client's pool between requests
    requests: list[str] = []

    def do_GET(self) -> None:  # noqa: N802  http.server's name
        self.requests.append(f"{self.headers['Host']}{self.path}")
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(IMAGE)))
        self.end_headers()
        self.wfile.write(IMAGE)

    def log_message(self, *_: object) -> None:
        pass


@contextlib.contextmanager
def serving(context: ssl.SSLContext | None) -> Iterator[tuple[int, list[str]]]:
    handler = type("Handler", (_Handler,), {"requests": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], handler.requests
    finally:
        server.shutdown()
        server.server_close()


def settings(*hosts: str, **overrides: object) -> FetchSettings:
    values: dict[str, object] = {"allowed_ports": ["*"], **overrides}  # the test servers listen on any port
    return FetchSettings(allowed_hosts=list(hosts), allow_private_hosts=list(hosts), **values)  # type: ignore[arg-type]


async def everything_is_loopback(host: str, port: int) -> list[str]:
    return ["127.0.0.1"]


async def test_fetch_two_hosts_on_one_address_each_verified_on_its_own() -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("a.test").configure_cert(server_context)  # a certificate for a.test alone
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    with serving(server_context) as (port, requests):
        fetcher = HttpImageFetcher(settings("a.test", "b.test"), everything_is_loopback, client_context)
        try:
            assert (await fetcher.fetch(f"https://a.test:{port}/one.jpg")).data == IMAGE
            # b.test shares the address and the pooled connection to it, but not a.test's certificate
            with pytest.raises(FetchFailed, match="CERTIFICATE_VERIFY_FAILED|certificate"):
                await fetcher.fetch(f"https://b.test:{port}/two.jpg")
            assert (await fetcher.fetch(f"https://a.test:{port}/three.jpg")).data == IMAGE
        finally:
            await fetcher.aclose()
    assert requests == [f"a.test:{port}/one.jpg", f"a.test:{port}/three.jpg"]


async def test_fetch_a_host_with_its_own_certificate_reuses_its_connection() -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("a.test", "b.test").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    with serving(server_context) as (port, requests):
        fetcher = HttpImageFetcher(settings("a.test", "b.test"), everything_is_loopback, client_context)
        try:
            for path in ("/a1.jpg", "/a2.jpg"):
                assert (await fetcher.fetch(f"https://a.test:{port}{path}")).data == IMAGE
            assert (await fetcher.fetch(f"https://b.test:{port}/b.jpg")).data == IMAGE
        finally:
            await fetcher.aclose()
    assert requests == [f"a.test:{port}/a1.jpg", f"a.test:{port}/a2.jpg", f"b.test:{port}/b.jpg"]


async def test_fetch_dns_that_changes_between_check_and_connect_reaches_nothing_internal() -> None:
    answers: list[str] = []

    async def rebinding(host: str, port: int) -> list[str]:
        # a public address for the check, the internal one right after: the classic rebinding answer
        answers.append(host)
        return ["8.8.8.8"] if len(answers) == 1 else ["127.0.0.1"]

    with serving(None) as (port, requests):
        fetcher = HttpImageFetcher(
            FetchSettings(allowed_hosts=["rebind.test"], allowed_ports=["*"], connect_timeout_s=0.5, total_timeout_s=3),
            rebinding,
        )
        try:
            with pytest.raises(FetchFailed):  # it connected to the address it checked, which answers nothing here
                await fetcher.fetch(f"http://rebind.test:{port}/x.jpg")
            with pytest.raises(UrlRefused, match="non-public") as refused:  # asked again: the internal answer
                await fetcher.fetch(f"http://rebind.test:{port}/x.jpg")
            assert "127.0.0.1" not in refused.value.message
        finally:
            await fetcher.aclose()
    assert answers == ["rebind.test", "rebind.test"]  # one answer per connection, none taken twice
    assert requests == []  # the internal server never saw a request
