"""The lean HTTP/1.1 client under Appium's commands (issue 14): what a server may answer besides
Appium's usual ``Content-Length`` JSON (chunks, a close, a repeated header, ``100 Continue``), and
what it refuses to send. Each server here is a real socket answering with the exact bytes given;
Appium's own answers are covered by every test that drives the fake driver."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.client import BadStatusLine, IncompleteRead, InvalidURL, RemoteDisconnected

import pytest
from urllib3.exceptions import ProtocolError

from pytest_sop.http1 import Connection
from pytest_sop.transport import KeptConnections


class Server:
    """Answers each request on a connection with the next of ``answers``, recording what it got.
    ``close_after``: one answer per connection, then it is closed; ``hold_after``: one answer per
    connection, which is then held open, unread, until the server closes."""

    def __init__(self, answers: list[bytes], close_after: bool = False, hold_after: bool = False) -> None:
        self.answers = answers
        self.close_after = close_after
        self.hold_after = hold_after
        self.held: list[socket.socket] = []
        self.requests: list[bytes] = []
        self.connections = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.answers:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            try:
                while self.answers:
                    request = self._request(conn)
                    if request is None:
                        break
                    self.requests.append(request)
                    conn.sendall(self.answers.pop(0))
                    if self.close_after or self.hold_after:
                        break
            finally:
                if self.hold_after:
                    self.held.append(conn)
                else:
                    conn.close()

    @staticmethod
    def _request(conn: socket.socket) -> bytes | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next((int(v) for k, _, v in (line.partition(b":") for line in head.split(b"\r\n"))
                       if k.strip().lower() == b"content-length"), 0)  # fmt: skip
        while len(body) < length:
            body += conn.recv(65536)
        return data

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def serve() -> Iterator[type[Server]]:
    made: list[Server] = []

    class Made(Server):
        def __init__(self, answers: list[bytes], close_after: bool = False, hold_after: bool = False) -> None:
            super().__init__(answers, close_after, hold_after)
            made.append(self)

    yield Made
    for server in made:
        server.close()


JSON = b'{"value": null}'


def ok(body: bytes = JSON, extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + extra
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )


def test_a_request_carries_its_body_length_host_and_headers(serve: type[Server]) -> None:
    server = serve([ok(), ok()])
    conn = Connection("127.0.0.1", server.port, timeout=5)
    sent = '{"using": "id", "value": "Zoë"}'.encode()
    conn.send("POST", "/session/1/element", sent, {"X-Appium-Is-Sensitive": "true"})
    status, reason, headers, body, will_close = conn.read()
    assert (status, reason, body, will_close) == (200, "OK", JSON, False)
    assert headers.get("content-type") == headers["Content-Type"] == "application/json"
    conn.send("DELETE", "/session/1", None, {})
    conn.read()
    conn.close()
    first, second = server.requests
    assert first.startswith(b"POST /session/1/element HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{server.port}\r\n".encode() in first
    assert b"X-Appium-Is-Sensitive: true\r\n" in first
    assert first.endswith(b"\r\n\r\n" + sent)
    assert b"Content-Length: %d\r\n" % len(sent) in first  # bytes, not characters
    assert second.startswith(b"DELETE /session/1 HTTP/1.1\r\n") and b"Content-Length" not in second
    assert server.connections == 1


def test_chunks_a_repeated_header_and_continue_are_read(serve: type[Server]) -> None:
    chunked = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nVary: Accept\r\nVary: Origin\r\n\r\n"
        b'5;ext=1\r\n{"val\r\na\r\nue": null}\r\n0\r\nX-Trailer: t\r\n\r\n'
    )
    server = serve([chunked, ok()])
    conn = Connection("127.0.0.1", server.port, timeout=5)
    conn.send("GET", "/status", None, {})
    status, _, headers, body, will_close = conn.read()
    assert (status, body, will_close) == (200, JSON, False)
    assert headers.get("VARY") == "Accept, Origin"
    conn.send("GET", "/status", None, {})  # the same connection goes on after the chunks
    assert conn.read()[3] == JSON
    assert server.connections == 1


@pytest.mark.parametrize(
    "answer, then",
    [
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 15\r\n\r\n" + JSON, "close"),
        # Heeded at once: a server may close only a while later (or never read again), so the idle
        # check alone would send the next request into a connection nobody reads.
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 15\r\n\r\n" + JSON, "hold"),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 15\r\n\r\n" + JSON, "close"),
        (b"HTTP/1.1 200 OK\r\n\r\n" + JSON, "close"),  # no length: the body runs to the close
    ],
)
def test_a_server_that_closes_after_the_answer_is_not_reused(serve: type[Server], answer: bytes, then: str) -> None:
    server = serve([answer, ok()], close_after=then == "close", hold_after=then == "hold")
    pool = KeptConnections()
    url = f"http://127.0.0.1:{server.port}/status"
    assert pool.request("GET", url, timeout=2).data == JSON
    assert pool.request("GET", url, timeout=2).data == JSON
    assert server.connections == 2


def test_a_connection_closed_without_an_answer_or_cut_short_is_an_error(serve: type[Server]) -> None:
    server = serve([b"", b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n{"], close_after=True)
    conn = Connection("127.0.0.1", server.port, timeout=5)
    conn.send("GET", "/status", None, {})
    with pytest.raises(RemoteDisconnected):
        conn.read()
    conn.close()
    conn.send("GET", "/status", None, {})
    with pytest.raises(IncompleteRead):
        conn.read()


def test_a_malformed_answer_is_urllib3s_protocol_error(serve: type[Server]) -> None:
    """Where Selenium's callers catch urllib3's errors, a malformed answer is one of them."""
    server = serve([b"SSH-2.0-OpenSSH_9.6\r\n\r\n"])
    with pytest.raises(ProtocolError, match="BadStatusLine"):
        KeptConnections().request("GET", f"http://127.0.0.1:{server.port}/status", timeout=5)
    with pytest.raises(BadStatusLine):
        conn = Connection("127.0.0.1", serve([b"HTTP/1.1 abc\r\n\r\n"]).port, timeout=5)
        conn.send("GET", "/", None, {})
        conn.read()


@pytest.mark.parametrize("size", [b"-5", b"5_0", b"0x5", b"+5", b"", b"4", b"6"])
def test_a_chunk_size_that_is_not_plain_hex_is_refused(serve: type[Server], size: bytes) -> None:
    server = serve(
        [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + size + b"\r\n" + JSON + b"\r\n0\r\n\r\n"]
    )
    with pytest.raises(ProtocolError, match="chunk size"):
        KeptConnections().request("GET", f"http://127.0.0.1:{server.port}/status", timeout=2)


@pytest.mark.parametrize(
    "framing",
    [b"Content-Length: 99999999999999999999", b"Content-Length: 1099511627776", b"Transfer-Encoding: chunked"],
)
def test_a_body_too_big_to_be_an_answer_is_refused_before_it_is_read(serve: type[Server], framing: bytes) -> None:
    """Not an OverflowError or a MemoryError from the reader: the HTTP error callers catch."""
    body = b"fffffffffffffffffff\r\n" if b"chunked" in framing else b""
    server = serve([b"HTTP/1.1 200 OK\r\n" + framing + b"\r\n\r\n" + body])
    with pytest.raises(ProtocolError, match="more than this client reads"):
        KeptConnections().request("GET", f"http://127.0.0.1:{server.port}/status", timeout=2)


def test_a_status_that_is_not_three_plain_digits_is_refused(serve: type[Server]) -> None:
    server = serve([b"HTTP/1.1 2\xb20 OK\r\nContent-Length: 0\r\n\r\n"])
    with pytest.raises(ProtocolError, match="BadStatusLine"):
        KeptConnections().request("GET", f"http://127.0.0.1:{server.port}/status", timeout=2)


@pytest.mark.parametrize("length", [b"-1", b"+15", b"15, 15", b"15\r\nContent-Length: 2", b"0x0f", b"", b"1\xb2"])
def test_a_body_length_that_is_not_one_plain_number_is_refused(serve: type[Server], length: bytes) -> None:
    """A sign, a list or a second length could make the client read more or less than the body:
    the next answer would then be read from the middle of this one."""
    server = serve([b"HTTP/1.1 200 OK\r\nContent-Length: " + length + b"\r\n\r\n" + JSON])
    with pytest.raises(ProtocolError, match="Content-Length"):
        KeptConnections().request("GET", f"http://127.0.0.1:{server.port}/status", timeout=2)


@pytest.mark.parametrize(
    "target, headers",
    [
        ("/session/1 HTTP/1.1\r\nX-Evil: 1\r\n\r\nGET /x", {}),
        ("/session/1", {"X-Note": "a\r\nX-Evil: 1"}),
        ("/session/1", {"X-Evil: 1\r\nX-Note": "a"}),
    ],
)
def test_nothing_is_smuggled_into_a_request(serve: type[Server], target: str, headers: dict[str, str]) -> None:
    server = serve([ok()])
    conn = Connection("127.0.0.1", server.port, timeout=5)
    with pytest.raises((InvalidURL, ValueError)):
        conn.send("GET", target, None, headers)
    assert server.requests == []
