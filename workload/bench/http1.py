"""A lean HTTP/1.1 client for streaming responses, built on asyncio protocols.

The load generator's hot path is one small network chunk per token. A general HTTP library costs
well over 100 µs of CPU per chunk (framing in pure Python, a timeout scope and several coroutine
switches per read); on a machine where the client shares cores with the server under test, that
CPU slows the server and delays the client's own timestamps. Here every piece of the body is
handed to a callback straight from the protocol's ``data_received``, stamped with the time it
arrived, and de-chunked with a few slices: no coroutine switch per chunk.

Scope: ``http``/``https`` origins, one request at a time per connection, keep-alive reuse,
``Content-Length``, ``Transfer-Encoding: chunked`` and read-until-close bodies. No proxies, no
redirects, no HTTP/2, no compression (requests say ``Accept-Encoding: identity``).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from urllib.parse import urlsplit

USER_AGENT = "ragbench-loadgen"
MAX_HEAD_BYTES = 64 * 1024


class HTTPClientError(Exception):
    """A failure of the exchange; ``code`` is the request record's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.exchange: Exchange | None = None
        self.lost = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.exchange is None:  # bytes on an idle connection: it cannot be reused
            self.lost = True
            if self.transport is not None:
                self.transport.close()
            return
        self.exchange.feed(data)

    def eof_received(self):
        return False  # close the transport

    def connection_lost(self, exc) -> None:
        self.lost = True
        if self.exchange is not None:
            self.exchange.connection_lost(exc)


class Connection:
    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self.transport = transport
        self.protocol = protocol

    @property
    def usable(self) -> bool:
        return not self.protocol.lost and not self.transport.is_closing()

    def close(self) -> None:
        self.protocol.lost = True
        self.transport.abort()


# Parser states
_HEAD, _SIZE, _DATA, _DATA_END, _TRAILER, _LENGTH, _UNTIL_CLOSE, _DONE = range(8)


class Exchange:
    """One request/response on a connection. Body bytes go to ``on_body(data, arrived_at)`` as they
    arrive; ``result`` resolves when the body is complete (or with an HTTPClientError)."""

    def __init__(self, clock: Callable[[], float], on_body: Callable[[bytes, float], None]) -> None:
        self.clock = clock
        self.on_body = on_body
        self.result: asyncio.Future = asyncio.get_running_loop().create_future()
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.keep_alive = True
        self.got_bytes = False
        self._state = _HEAD
        self._buf = b""
        self._remaining = 0

    # -- feeding ---------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        now = self.clock()
        self.got_bytes = True
        if self.result.done():
            return
        try:
            self._feed(data, now)
        except HTTPClientError as exc:
            self._finish(exc)
        except Exception as exc:  # noqa: BLE001 - a callback failing must end this exchange, not the loop
            self._finish(exc)

    def _feed(self, data: bytes, now: float) -> None:
        buf = self._buf + data if self._buf else data
        self._buf = b""
        pos = 0
        n = len(buf)
        while pos < n and not self.result.done():
            state = self._state
            if state == _DATA:
                take = min(self._remaining, n - pos)
                self._remaining -= take
                piece = buf[pos:pos + take]
                pos += take
                if self._remaining == 0:
                    self._state = _DATA_END
                self.on_body(piece, now)
            elif state == _DATA_END:
                if n - pos < 2:
                    break
                if buf[pos:pos + 2] != b"\r\n":
                    raise HTTPClientError("stream_incomplete", "chunk not followed by CRLF")
                pos += 2
                self._state = _SIZE
            elif state == _SIZE or state == _TRAILER:
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    if n - pos > 4096:
                        raise HTTPClientError("stream_incomplete", "chunk size line too long")
                    break
                line = buf[pos:end]
                pos = end + 2
                if state == _SIZE:
                    try:
                        size = int(line.split(b";", 1)[0].strip(), 16)
                    except ValueError:
                        raise HTTPClientError("stream_incomplete", f"bad chunk size {line[:20]!r}") from None
                    if size == 0:
                        self._state = _TRAILER
                    else:
                        self._remaining, self._state = size, _DATA
                elif not line:  # the blank line after the (usually empty) trailers
                    self._state = _DONE
                    self._finish(None)
            elif state == _LENGTH:
                take = min(self._remaining, n - pos)
                self._remaining -= take
                piece = buf[pos:pos + take]
                pos += take
                self.on_body(piece, now)
                if self._remaining == 0:
                    self._state = _DONE
                    self._finish(None)
            elif state == _UNTIL_CLOSE:
                self.on_body(buf[pos:], now)
                pos = n
            elif state == _HEAD:
                end = buf.find(b"\r\n\r\n", pos)
                if end < 0:
                    if n - pos > MAX_HEAD_BYTES:
                        raise HTTPClientError("stream_incomplete", "response head too large")
                    break
                head = buf[pos:end]
                pos = end + 4
                self._head(head)
            else:  # _DONE: bytes after the end of the body
                self.keep_alive = False
                break
        if pos < n:
            if self._state in (_HEAD, _SIZE, _DATA_END, _TRAILER):
                self._buf = buf[pos:]
            elif self._state == _DONE:  # bytes after the end of the body: the connection is not clean
                self.keep_alive = False

    def _head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise HTTPClientError("stream_incomplete", f"not an HTTP/1.x response: {lines[0][:60]!r}")
        try:
            status = int(parts[1])
        except ValueError:
            raise HTTPClientError("stream_incomplete", f"bad status line {lines[0][:60]!r}") from None
        if 100 <= status < 200:
            return  # an interim response; the real head follows
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon:
                raise HTTPClientError("stream_incomplete", f"bad header line {line[:60]!r}")
            key = name.strip().lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        self.status, self.headers = status, headers
        connection = headers.get("connection", "").lower()
        self.keep_alive = parts[0] == "HTTP/1.1" and "close" not in connection
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._state = _SIZE
        elif "content-length" in headers:
            try:
                self._remaining = int(headers["content-length"])
            except ValueError:
                raise HTTPClientError("stream_incomplete", "bad content-length") from None
            self._state = _LENGTH
            if self._remaining == 0:
                self._state = _DONE
                self._finish(None)
        elif status in (204, 304):
            self._state = _DONE
            self._finish(None)
        else:
            self._state, self.keep_alive = _UNTIL_CLOSE, False

    # -- ending ----------------------------------------------------------------------------
    def connection_lost(self, exc: BaseException | None) -> None:
        self.keep_alive = False
        if self.result.done():
            return
        if self._state == _UNTIL_CLOSE:
            self._state = _DONE
            self._finish(None)
            return
        code = "stream_incomplete" if self.got_bytes else "connect_error"
        why = f"{type(exc).__name__}: {exc}" if exc else "the server closed the connection"
        self._finish(HTTPClientError(code, f"connection lost before the response ended ({why})"))

    def finish_early(self, exc: BaseException | None = None) -> None:
        """Stop before the body ended (the caller has what it needs, or failed): no reuse."""
        self.keep_alive = False
        self._finish(exc)

    @property
    def complete(self) -> bool:
        return self._state == _DONE

    def _finish(self, exc: BaseException | None) -> None:
        if not self.result.done():
            if exc is None:
                self.result.set_result(None)
            else:
                self.result.set_exception(exc)


class Pool:
    """Keep-alive connections to one origin (no limit: one per request in flight)."""

    def __init__(self, base_url: str, connect_timeout_s: float = 5.0, headers: dict[str, str] | None = None,
                 user_agent: str = USER_AGENT) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self.base_path = parts.path.rstrip("/")
        default_port = (parts.scheme == "https" and self.port == 443) or (parts.scheme == "http" and self.port == 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = host if default_port else f"{host}:{self.port}"
        self.connect_timeout_s = connect_timeout_s
        self.headers = {k.lower(): v for k, v in (headers or {}).items()}
        self.user_agent = user_agent
        self._idle: list[Connection] = []
        self._open: set[Connection] = set()

    async def connect(self) -> tuple[Connection, float | None]:
        """An idle keep-alive connection, or a new one; the second value is the TCP (+TLS) connect
        time in ms when a new connection was opened."""
        while self._idle:
            conn = self._idle.pop()
            if conn.usable:
                return conn, None
            self._open.discard(conn)
        loop = asyncio.get_running_loop()
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                transport, protocol = await loop.create_connection(
                    _Protocol, self.host, self.port, ssl=self.ssl,
                    server_hostname=self.host if self.ssl else None)
        except TimeoutError:
            raise HTTPClientError("connect_timeout", f"no connection to {self.host}:{self.port} within "
                                                     f"{self.connect_timeout_s:g} s") from None
        except OSError as exc:
            raise HTTPClientError("connect_error", f"{type(exc).__name__}: {exc}") from None
        connect_ms = (time.perf_counter() - t0) * 1000
        conn = Connection(transport, protocol)
        self._open.add(conn)
        return conn, connect_ms

    def request_bytes(self, method: str, path: str, body: bytes, content_type: str = "application/json") -> bytes:
        lines = [f"{method} {self.base_path}{path} HTTP/1.1", f"host: {self.host_header}",
                 f"user-agent: {self.user_agent}", "accept: text/event-stream", "accept-encoding: identity",
                 f"content-type: {content_type}", f"content-length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in self.headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    def start(self, conn: Connection, request: bytes, clock: Callable[[], float],
              on_body: Callable[[bytes, float], None]) -> Exchange:
        """Send the request on ``conn``; the response is parsed as it arrives."""
        exchange = Exchange(clock, on_body)
        conn.protocol.exchange = exchange
        conn.transport.write(request)
        return exchange

    def release(self, conn: Connection, exchange: Exchange | None) -> None:
        """Return the connection for reuse when its response ended cleanly, else close it."""
        conn.protocol.exchange = None
        if exchange is not None and exchange.complete and exchange.keep_alive and conn.usable:
            self._idle.append(conn)
        else:
            conn.close()
            self._open.discard(conn)

    async def aclose(self) -> None:
        for conn in list(self._open):
            conn.close()
        self._open.clear()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports run their close callbacks
