"""One HTTP/1.1 client connection for Appium's commands: a request at a time, its response read whole.

:mod:`http.client` spends about three times this module's CPU on a request (measured against the
same Appium; a command's client CPU lies on the device's critical path): its response headers go
through the :mod:`email` parser, and a request's head and body leave in two writes. Here a request
is one write (with ``TCP_NODELAY``, as urllib3 sets it), and a response is parsed only as far as a
JSON command needs: status, headers, a body by ``Content-Length``, chunks, or up to the close
(issue 14). Errors are :mod:`http.client`'s own, so callers catch them as before:
``RemoteDisconnected`` for a connection the server closed, ``HTTPException`` for a malformed
response, ``OSError`` for the socket's.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping
from http.client import BadStatusLine, HTTPException, IncompleteRead, InvalidURL, LineTooLong, RemoteDisconnected
from typing import BinaryIO

_MAX_LINE = 65536  # as http.client
_MAX_HEADERS = 100
_MAX_BODY = 1 << 31  # a page source or screenshot is megabytes; more is a broken answer, not one to allocate
_BAD_IN_TARGET = re.compile(r"[\x00-\x20\x7f]")  # http.client refuses them too: no request smuggled in a path
_DIGITS = re.compile(r"[0-9]+")  # str.isdigit() and int() take more: "²", "+1", "1_0"
_HEX = re.compile(rb"[0-9A-Fa-f]+")
_BODY_METHODS = ("POST", "PUT", "PATCH")  # a body length even when empty, as http.client sends it


class Headers(dict[str, str]):
    """A response's headers, by lower-case name, looked up in any case (as Selenium reads urllib3's).
    A header that came more than once has its values joined by ``, ``."""

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return super().get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())


class Connection:
    """A keep-alive connection to ``host:port``, opened on its first request."""

    def __init__(self, host: str, port: int, timeout: float | None = None) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self._reader: BinaryIO | None = None
        self._method = ""
        name = f"[{host}]" if ":" in host else host
        self._host_header = name if port == 80 else f"{name}:{port}"

    def settimeout(self, timeout: float | None) -> None:
        self.timeout = timeout
        if self.sock is not None:
            self.sock.settimeout(timeout)

    def close(self) -> None:
        reader, sock, self._reader, self.sock = self._reader, self.sock, None, None
        if reader is not None:
            reader.close()
        if sock is not None:
            sock.close()

    def send(self, method: str, target: str, body: bytes | None, headers: Mapping[str, str]) -> None:
        """The request, in one write."""
        if not target.startswith("/") or _BAD_IN_TARGET.search(target):
            raise InvalidURL(f"URL can't contain control characters or spaces: {target!r}")
        lines = [f"{method} {target} HTTP/1.1"]
        given = {name.lower() for name in headers}
        if "host" not in given:
            lines.append(f"Host: {self._host_header}")
        if "accept-encoding" not in given:
            lines.append("Accept-Encoding: identity")  # the body as sent: nothing here inflates it
        for name, value in headers.items():
            text = str(value)
            if not name or ":" in name or "\r" in name or "\n" in name or "\r" in text or "\n" in text:
                raise ValueError(f"Invalid header {name!r}: {text!r}")
            lines.append(f"{name}: {text}")
        if (body is not None or method in _BODY_METHODS) and "content-length" not in given:
            lines.append(f"Content-Length: {len(body or b'')}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if self.sock is None:
            self._connect()
        assert self.sock is not None
        self._method = method
        self.sock.sendall(data + body if body else data)

    def read(self) -> tuple[int, str, Headers, bytes, bool]:
        """The response to the request sent: status, reason, headers, body, and whether the server
        closes the connection after it."""
        if self._reader is None:
            raise RemoteDisconnected("no request was sent on this connection")
        version, status, reason = self._status_line()
        while status == 100:  # "Continue": the real response follows
            self._headers()
            version, status, reason = self._status_line()
        headers = self._headers()
        connection = (headers.get("connection") or "").lower()
        if version == "HTTP/1.0":
            will_close = "keep-alive" not in connection and "keep-alive" not in headers
        else:
            will_close = "close" in connection
        length = headers.get("content-length")
        if status in (204, 304) or status < 200 or self._method == "HEAD":
            body = b""
        elif (headers.get("transfer-encoding") or "").lower() == "chunked":
            body = self._chunked()
        elif length is not None:
            if not _DIGITS.fullmatch(length):  # no sign, no list of lengths
                raise HTTPException(f"invalid Content-Length: {length!r}")
            body = self._exactly(int(length))
        else:  # neither length nor chunks: the body is all there is until the server closes
            body = self._reader.read()
            will_close = True
        return status, reason, headers, body, will_close

    def _connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock, self._reader = sock, sock.makefile("rb")

    def _line(self, what: str) -> bytes:
        assert self._reader is not None
        line = self._reader.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            raise LineTooLong(what)
        return line

    def _status_line(self) -> tuple[str, int, str]:
        line = self._line("status line")
        if not line:
            raise RemoteDisconnected("Remote end closed connection without response")
        text = line.decode("iso-8859-1")
        parts = text.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not _DIGITS.fullmatch(parts[1]):
            raise BadStatusLine(text)
        status = int(parts[1])
        if not 100 <= status <= 999:
            raise BadStatusLine(text)
        return parts[0], status, parts[2].strip() if len(parts) > 2 else ""

    def _headers(self) -> Headers:
        assert self._reader is not None
        readline = self._reader.readline
        found: dict[str, str] = {}
        for _ in range(_MAX_HEADERS + 1):
            line = readline(_MAX_LINE + 1)
            if len(line) > _MAX_LINE:
                raise LineTooLong("header line")
            if line in (b"\r\n", b"\n", b""):
                return Headers(found)
            name, sep, value = line.decode("iso-8859-1").partition(":")
            if not sep:
                raise HTTPException(f"malformed header line: {line!r}")
            key, value = name.strip().lower(), value.strip()
            found[key] = f"{found[key]}, {value}" if key in found else value
        raise HTTPException(f"got more than {_MAX_HEADERS} headers")

    def _exactly(self, size: int) -> bytes:
        assert self._reader is not None
        if size > _MAX_BODY:
            raise HTTPException(f"a body of {size} bytes is more than this client reads ({_MAX_BODY})")
        data = self._reader.read(size)
        if len(data) < size:
            raise IncompleteRead(data, size - len(data))
        return data

    def _chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            line = self._line("chunk size")
            digits = line.split(b";", 1)[0].strip()
            if not _HEX.fullmatch(digits):  # no sign, no "0x", no "_" (int() takes them all)
                raise HTTPException(f"invalid chunk size: {line!r}")
            size = int(digits, 16)
            if size == 0:
                while self._line("trailer line") not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            parts.append(self._exactly(size))
            if self._exactly(2) != b"\r\n":  # the chunk is not as long as it said
                raise HTTPException(f"invalid chunk size: {line!r} (no CRLF after its data)")
