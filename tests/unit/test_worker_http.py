"""The worker's HTTP/1.1 server (scoring/server.py) and the router's client for it (runtime/transport.py),
in process over real sockets: keep-alive, pipelined answers in order, HEAD, 100-continue, chunked
bodies, limits, HTTP/1.0, a graceful stop; the client's timeout, retry on a closed pooled connection,
and a malformed answer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from appliance.runtime.transport import HTTPClient
from appliance.scoring import server
from appliance.scoring.server import Answer

TEXT = [(b"content-type", b"text/plain")]


def app(scope: dict[str, Any], body: bytes) -> Answer | Awaitable[Answer]:
    """Echoes; /slow answers later (as a batched /score does), after the number of ms in its body."""
    if scope["path"] == "/slow":
        async def later() -> Answer:
            await asyncio.sleep(int(body or b"0") / 1000)
            return 200, TEXT, b"slow " + body
        return later()
    if scope["path"] == "/boom":
        raise RuntimeError("a fault of the app's")
    echo = f"{scope['method']} {scope['path']}?{scope['query_string'].decode()} {len(body)}:".encode() + body
    return 200, [*TEXT, (b"x-headers", str(len(scope["headers"])).encode())], echo


def run(scenario: Callable[[server.Listener, str], Awaitable[None]], tmp_path: Path) -> None:
    async def main() -> None:
        path = str(tmp_path / "w.sock")
        listener = await server.listen(app, socket_path=path)
        try:
            await scenario(listener, path)
        finally:
            await listener.stop(grace=1)

    asyncio.run(main())


async def raw(path: str, data: bytes, until_closed: bool = True) -> bytes:
    reader, writer = await asyncio.open_unix_connection(path)
    writer.write(data)
    try:
        if until_closed:
            return await asyncio.wait_for(reader.read(), 5)
        return await asyncio.wait_for(reader.read(65536), 5)
    finally:
        writer.close()


def test_keep_alive_one_connection_for_many_requests(tmp_path: Path) -> None:
    async def scenario(listener: server.Listener, path: str) -> None:
        client = HTTPClient(path=path)
        for i in range(5):
            response = await client.request("POST", f"/score?i={i}", b"{}", [(b"x-a", b"1")])
            assert (response.status, response.body) == (200, f"POST /score?i={i} 2:{{}}".encode())
            assert response.header(b"content-length") == str(len(response.body)).encode()
            assert response.header(b"date") is not None
        assert len(listener.connections) == 1
        client.close()

    run(scenario, tmp_path)


def test_pipelined_requests_are_answered_in_order_even_when_the_first_answers_later(tmp_path: Path) -> None:
    async def scenario(listener: server.Listener, path: str) -> None:
        both = (b"POST /slow HTTP/1.1\r\nhost: w\r\ncontent-length: 2\r\n\r\n30"
                b"GET /fast HTTP/1.1\r\nhost: w\r\nconnection: close\r\n\r\n")
        answer = await raw(path, both)
        assert answer.index(b"slow 30") < answer.index(b"GET /fast? 0:")
        assert answer.count(b"HTTP/1.1 200 OK") == 2 and b"connection: close" in answer

    run(scenario, tmp_path)


def test_head_has_the_length_but_no_body_and_100_continue_is_answered(tmp_path: Path) -> None:
    async def scenario(listener: server.Listener, path: str) -> None:
        head = await raw(path, b"HEAD /x HTTP/1.1\r\nhost: w\r\nconnection: close\r\n\r\n")
        assert b"content-length: 11\r\n" in head and head.endswith(b"\r\n\r\n")  # of "HEAD /x? 0:", not sent
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(b"POST /score HTTP/1.1\r\nhost: w\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n")
        assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5) == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"hello")
        final = await asyncio.wait_for(reader.readuntil(b"5:hello"), 5)
        assert final.startswith(b"HTTP/1.1 200 OK\r\n")
        writer.close()

    run(scenario, tmp_path)


def test_no_100_continue_when_the_body_came_with_the_head(tmp_path: Path) -> None:
    async def scenario(listener: server.Listener, path: str) -> None:
        answer = await raw(path, b"POST /score HTTP/1.1\r\nhost: w\r\ncontent-length: 2\r\nexpect: 100-continue\r\n"
                                 b"connection: close\r\n\r\nhi")
        assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"2:hi")

    run(scenario, tmp_path)


async def answering(path: str, answer: bytes) -> asyncio.Server:
    """Another server, which writes `answer` as it is once a request's head has come."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()

    return await asyncio.start_unix_server(handle, path)


def test_the_client_passes_over_an_interim_100_continue(tmp_path: Path) -> None:
    async def main() -> None:
        path = str(tmp_path / "interim.sock")
        other = await answering(path, b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfinal")
        response = await HTTPClient(path=path).request("POST", "/", b"x")
        assert (response.status, response.body) == (200, b"final")
        other.close()

    asyncio.run(main())


def test_a_chunked_body_is_joined(tmp_path: Path) -> None:
    async def scenario(listener: server.Listener, path: str) -> None:
        answer = await raw(path, b"POST /score HTTP/1.1\r\nhost: w\r\ntransfer-encoding: chunked\r\n"
                                 b"connection: close\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        assert answer.endswith(b"POST /score? 5:abcde")

    run(scenario, tmp_path)


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"GET / HTTP/1.1\r\nhost: w\r\nx-big: " + b"a" * (server.MAX_HEADER_BYTES + 1) + b"\r\n\r\n", b"431"),
    (b"POST / HTTP/1.1\r\nhost: w\r\ncontent-length: " + str(server.MAX_BODY_BYTES + 1).encode() + b"\r\n\r\n",
     b"413"),
    (b"NOT HTTP AT ALL\r\n\r\n", b"400"),
], ids=["headers", "body", "malformed"])
def test_refusals_answer_then_close(tmp_path: Path, request_bytes: bytes, status: bytes) -> None:
    async def scenario(listener: server.Listener, path: str) -> None:
        answer = await raw(path, request_bytes)
        assert answer.startswith(b"HTTP/1.1 " + status) and b"connection: close" in answer

    run(scenario, tmp_path)


def test_http_1_0_closes_and_an_app_fault_is_a_500(tmp_path: Path) -> None:
    async def scenario(listener: server.Listener, path: str) -> None:
        answer = await raw(path, b"GET /x HTTP/1.0\r\n\r\n")  # read() returns: the server closed
        assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"GET /x? 0:")
        client = HTTPClient(path=path)
        failed = await client.request("GET", "/boom")
        assert failed.status == 500 and b"the worker failed" in failed.body
        client.close()

    run(scenario, tmp_path)


def test_a_stop_lets_the_request_in_flight_finish(tmp_path: Path) -> None:
    async def main() -> None:
        path = str(tmp_path / "w.sock")
        listener = await server.listen(app, socket_path=path)
        client = HTTPClient(path=path)
        slow = asyncio.create_task(client.request("POST", "/slow", b"200"))
        await asyncio.sleep(0.05)
        await listener.stop(grace=5)
        assert (await slow).body == b"slow 200"
        with pytest.raises(OSError):  # no longer listening
            await HTTPClient(path=path).request("GET", "/")

    asyncio.run(main())


def test_the_client_times_out_and_drops_that_connection(tmp_path: Path) -> None:
    async def scenario(listener: server.Listener, path: str) -> None:
        client = HTTPClient(path=path)
        with pytest.raises(TimeoutError):
            await client.request("POST", "/slow", b"500", timeout=0.05)
        assert (await client.request("GET", "/after", timeout=5)).status == 200
        client.close()

    run(scenario, tmp_path)


def test_a_pooled_connection_the_worker_closed_is_retried_on_a_fresh_one(tmp_path: Path) -> None:
    async def scenario(listener: server.Listener, path: str) -> None:
        client = HTTPClient(path=path)
        assert (await client.request("GET", "/one")).status == 200
        for connection in list(listener.connections):  # the worker drops its idle connection...
            connection.close()
        await asyncio.sleep(0)  # ...and the client may or may not have seen it yet
        assert (await client.request("GET", "/two")).body == b"GET /two? 0:"
        client.close()

    run(scenario, tmp_path)


def test_a_malformed_answer_is_an_os_error(tmp_path: Path) -> None:
    async def main() -> None:
        path = str(tmp_path / "bad.sock")
        bad = await answering(path, b"HTTP/1.1 200 OK\r\ncontent-length: nope\r\n\r\n")
        with pytest.raises(OSError, match="not valid HTTP"):
            await HTTPClient(path=path).request("GET", "/")
        bad.close()

    asyncio.run(main())
