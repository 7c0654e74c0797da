"""The lean HTTP/1.1 client: response framing (chunked, content-length, until-close), arrival times,
keep-alive reuse, and failures, against byte strings and a real server on 127.0.0.1."""

from __future__ import annotations

import asyncio

import pytest

from workload.bench.http1 import Exchange, HTTPClientError, Pool

pytestmark = pytest.mark.unit

CHUNKED = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\n"
           b"7;ext=1\r\n, world\r\n"
           b"0\r\n\r\n")


def feed_all(pieces: list[bytes]) -> tuple[Exchange, list[tuple[bytes, float]]]:
    async def go():
        got: list[tuple[bytes, float]] = []
        t = iter(range(1, 10**6))
        ex = Exchange(lambda: float(next(t)), lambda data, now: got.append((data, now)))
        for piece in pieces:
            ex.feed(piece)
        return ex, got
    return asyncio.run(go())


def body(got) -> bytes:
    return b"".join(d for d, _ in got)


def test_chunked_body_in_one_piece():
    ex, got = feed_all([CHUNKED])
    assert ex.status == 200 and ex.headers["transfer-encoding"] == "chunked"
    assert body(got) == b"hello, world"
    assert ex.complete and ex.keep_alive and ex.result.done() and ex.result.exception() is None
    assert {now for _, now in got} == {1.0}  # everything arrived in the first piece


@pytest.mark.parametrize("cut", range(1, len(CHUNKED)))
def test_chunked_body_split_anywhere(cut):
    ex, got = feed_all([CHUNKED[:cut], CHUNKED[cut:]])
    assert body(got) == b"hello, world"
    assert ex.complete and ex.result.done()


def test_one_byte_at_a_time_stamps_each_piece_with_its_arrival():
    ex, got = feed_all([bytes([b]) for b in CHUNKED])
    assert body(got) == b"hello, world"
    head_end = CHUNKED.index(b"\r\n\r\n") + 4
    first_data = CHUNKED.index(b"hello")
    assert got[0] == (b"h", float(first_data + 1))  # the 'h' was byte number first_data + 1
    assert first_data > head_end
    assert ex.complete


def test_content_length_body():
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab"
    ex, got = feed_all([raw, b"cde"])
    assert body(got) == b"abcde" and ex.complete and ex.keep_alive
    assert [now for _, now in got] == [1.0, 2.0]


def test_bytes_after_the_body_prevent_reuse():
    ex, got = feed_all([b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA"])
    assert body(got) == b"ok" and ex.complete and not ex.keep_alive


def test_connection_close_and_http10_are_not_reused():
    ex, _ = feed_all([b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"])
    assert ex.complete and not ex.keep_alive
    ex, _ = feed_all([b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"])
    assert ex.complete and not ex.keep_alive


def test_interim_response_is_skipped():
    ex, got = feed_all([b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nx"])
    assert ex.status == 201 and body(got) == b"x"


def test_body_until_close():
    async def go():
        got = []
        ex = Exchange(lambda: 0.0, lambda d, now: got.append(d))
        ex.feed(b"HTTP/1.1 200 OK\r\n\r\npart1 ")
        ex.feed(b"part2")
        assert not ex.result.done()
        ex.connection_lost(None)
        return ex, b"".join(got)
    ex, data = asyncio.run(go())
    assert data == b"part1 part2" and ex.complete and not ex.keep_alive and ex.result.exception() is None


@pytest.mark.parametrize(("pieces", "code"), [
    ([], "connect_error"),  # nothing at all came back
    ([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel"], "stream_incomplete"),
])
def test_connection_lost_before_the_end(pieces, code):
    async def go():
        ex = Exchange(lambda: 0.0, lambda d, now: None)
        for p in pieces:
            ex.feed(p)
        ex.connection_lost(ConnectionResetError("reset"))
        return ex
    ex = asyncio.run(go())
    exc = ex.result.exception()
    assert isinstance(exc, HTTPClientError) and exc.code == code
    assert "ConnectionResetError" in str(exc)


@pytest.mark.parametrize("raw", [
    b"SSH-2.0-OpenSSH\r\n\r\n",
    b"HTTP/1.1 abc OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY",
])
def test_malformed_responses_fail_as_stream_incomplete(raw):
    ex, _ = feed_all([raw])
    exc = ex.result.exception()
    assert isinstance(exc, HTTPClientError) and exc.code == "stream_incomplete"


def test_a_failing_body_callback_ends_the_exchange_with_its_exception():
    async def go():
        def boom(data, now):
            raise ValueError("bad event")
        ex = Exchange(lambda: 0.0, boom)
        ex.feed(CHUNKED)
        return ex
    exc = asyncio.run(go()).result.exception()
    assert isinstance(exc, ValueError) and str(exc) == "bad event"


def test_request_bytes():
    pool = Pool("http://127.0.0.1:8080/api/", headers={"Authorization": "Bearer t"})
    raw = pool.request_bytes("POST", "/query/stream", b'{"a":1}')
    head, _, payload = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /api/query/stream HTTP/1.1"
    assert "host: 127.0.0.1:8080" in lines
    assert "content-length: 7" in lines and "content-type: application/json" in lines
    assert "authorization: Bearer t" in lines
    assert payload == b'{"a":1}'
    assert Pool("https://example.test").host_header == "example.test"
    assert Pool("http://[::1]:9").host_header == "[::1]:9"
    with pytest.raises(ValueError):
        Pool("ftp://x")


# --------------------------------------------------------------------------- against a real server


async def serve(responses: list[bytes], close_after: bool = False):
    """A server answering the i-th request on each connection with responses[i] (the last repeats)."""
    connections = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        i = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                await reader.readexactly(length)
                writer.write(responses[min(i, len(responses) - 1)])
                await writer.drain()
                i += 1
                if close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], connections


async def exchange_once(pool: Pool) -> tuple[bytes, float | None, Exchange]:
    conn, connect_ms = await pool.connect()
    got = []
    ex = pool.start(conn, pool.request_bytes("POST", "/x", b"{}"), lambda: 0.0, lambda d, now: got.append(d))
    try:
        await asyncio.wait_for(ex.result, 5)
    finally:
        pool.release(conn, ex)
    return b"".join(got), connect_ms, ex


def test_keep_alive_connection_is_reused():
    async def go():
        server, port, conns = await serve([CHUNKED])
        pool = Pool(f"http://127.0.0.1:{port}")
        try:
            first = await exchange_once(pool)
            second = await exchange_once(pool)
        finally:
            await pool.aclose()
            server.close()
        return first, second, len(conns)
    (b1, c1, _), (b2, c2, _), n_conns = asyncio.run(go())
    assert b1 == b2 == b"hello, world"
    assert c1 is not None and c1 > 0  # the first request opened a connection (and timed it)
    assert c2 is None  # the second reused it
    assert n_conns == 1


def test_server_closing_after_the_response_gets_a_new_connection():
    async def go():
        server, port, conns = await serve([CHUNKED], close_after=True)
        pool = Pool(f"http://127.0.0.1:{port}")
        try:
            await exchange_once(pool)
            await asyncio.sleep(0.05)  # the server's close reaches the idle connection
            _, connect_ms, _ = await exchange_once(pool)
        finally:
            await pool.aclose()
            server.close()
        return connect_ms, len(conns)
    connect_ms, n_conns = asyncio.run(go())
    assert connect_ms is not None and n_conns == 2


def test_connect_refused_is_connect_error():
    async def go():
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        with pytest.raises(HTTPClientError) as err:
            await Pool(f"http://127.0.0.1:{port}").connect()
        return err.value
    assert asyncio.run(go()).code == "connect_error"
