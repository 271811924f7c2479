"""The control API as an attacker sees it, and the limits a careless or hostile client meets, on a real
daemon over real sockets: spellings of `/api` without the token, web pages (foreign origins, simple
cross-site requests), oversized and slow request heads, floods of idle connections, absurd scale."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from conftest import Daemon, wait_until


@pytest.fixture(scope="module")
def hardened(tmp_path_factory: pytest.TempPathFactory, iris_onnx: Path) -> Iterator[Daemon]:
    """One daemon for the module, with short deadlines so the tests can watch them act, and my-ep/blue."""
    root = tmp_path_factory.mktemp("security")
    d = Daemon(root / "home", "--header-timeout", "1", "--body-timeout", "1", "--keepalive-timeout", "1",
               "--max-connections", "2000", "--max-instances", "8").start()
    project = root / "project"
    (project / "model").mkdir(parents=True)
    (project / "model" / "model.onnx").write_bytes(iris_onnx.read_bytes())
    (project / "endpoint.yml").write_text("name: my-ep\nauth_mode: key\n")
    (project / "blue.yml").write_text("name: blue\nendpoint_name: my-ep\nmodel:\n  name: iris\n  path: ./model/\n")
    d.cli("apply", "-f", str(project / "endpoint.yml"), "-f", str(project / "blue.yml"))
    yield d
    d.stop()


def raw(daemon: Daemon, request: bytes, timeout: float = 5.0) -> bytes:
    """`request` sent as is (no client normalizes its path); everything the daemon answers until it closes."""
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=timeout) as s:
        s.sendall(request)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


SPELLINGS = ["//api/v1/endpoints/my-ep/credentials", "/./api/v1/endpoints/my-ep/credentials",
             "/api/v1/./endpoints/my-ep/credentials", "/x/../api/v1/endpoints/my-ep/credentials",
             "/api%2Fv1%2Fendpoints%2Fmy-ep%2Fcredentials", "/%61pi/v1/endpoints/my-ep/credentials",
             "/API/v1/endpoints/my-ep/credentials", "/api/v1/endpoints/my-ep/credentials.",
             "/api/v1/endpoints/my-ep/credentials/", "///api//v1//endpoints//my-ep//credentials",
             "/api/v1/schema/../endpoints/my-ep/credentials", "/api/v1/health/../endpoints/my-ep/credentials"]


@pytest.mark.parametrize("path", SPELLINGS)
def test_no_spelling_of_the_control_api_opens_it_without_the_token(hardened: Daemon, path: str) -> None:
    keys = hardened.api("POST", "/endpoints/my-ep/credentials").json()
    answer = raw(hardened, f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n"
                           "Connection: close\r\n\r\n".encode())
    assert status_of(answer) == 401, answer
    assert keys["primaryKey"].encode() not in answer and keys["secondaryKey"].encode() not in answer


def test_only_health_and_the_schema_are_open_and_they_reveal_no_secret(hardened: Daemon) -> None:
    keys = hardened.api("POST", "/endpoints/my-ep/credentials").json()
    token = (hardened.home / "admin.token").read_text().strip()
    for path in ("/api/v1/health", "/api/v1/schema/openapi.json", "/api/v1/schema/openapi.yaml"):
        response = httpx.get(hardened.url + path)
        assert response.status_code == 200, path
        for secret in (token, keys["primaryKey"], keys["secondaryKey"]):
            assert secret not in response.text
    for path in ("/", "/api", "/api/v1", "/api/v1/endpoints", "/api/v1/schema/swagger", "/metrics", "/x"):
        assert httpx.get(hardened.url + path).status_code == 401, path
    assert httpx.post(hardened.url + "/api/v1/health").status_code == 401  # open for reading only


def test_a_web_page_can_not_drive_the_control_api(hardened: Daemon) -> None:
    """A page's fetch() carries its Origin; a form or text/plain post is a 'simple' cross-site request that
    needs no preflight: both are refused before anything is read, token or not."""
    evil = "http://evil.example"
    apply = json.dumps({"documents": [{"body": {"name": "pwned", "auth_mode": "key"}}]})
    for headers in ({"origin": evil, "content-type": "text/plain"},
                    {"origin": evil, "content-type": "application/json"},
                    {"origin": "null", "content-type": "application/json"}):
        response = httpx.post(hardened.url + "//api/v1/apply", content=apply, headers=headers)
        assert response.status_code == 403, response.text
        response = httpx.post(hardened.url + "/api/v1/apply", content=apply, headers={**hardened.admin, **headers})
        assert response.status_code == 403, response.text
    # Even with the token, only JSON bodies: a form or text can't be a control request.
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        response = httpx.post(hardened.url + "/api/v1/apply", content=apply,
                              headers={**hardened.admin, "content-type": content_type})
        assert response.status_code == 415 and "JSON" in response.json()["message"]
    assert httpx.get(hardened.url + "/api/v1/endpoints/pwned", headers=hardened.admin).status_code == 404
    # The daemon's own origin (a page it serves, or a client that sends one) is fine.
    response = httpx.get(hardened.url + "/api/v1/endpoints",
                         headers={**hardened.admin, "origin": f"http://127.0.0.1:{hardened.port}"})
    assert response.status_code == 200


def test_instance_count_is_bounded(hardened: Daemon) -> None:
    result = hardened.cli("deployment", "update", "my-ep", "blue", "--set", "instance_count=100000", check=False)
    assert result.returncode != 0 and "instance_count" in result.stderr and "100000" in result.stderr
    assert "--max-instances" in result.stderr and "Traceback" not in result.stderr
    shown = hardened.api("GET", "/endpoints/my-ep/deployments/blue").json()
    assert shown["instance_count"] == 1  # nothing stored
    assert hardened.score("my-ep", {"data": [[5.1, 3.5, 1.4, 0.2]]}).status_code == 200


def test_request_heads_are_bounded_in_size(hardened: Daemon) -> None:
    big = "x" * (17 * 1024)
    answer = raw(hardened, f"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {big}\r\n\r\n".encode())
    assert status_of(answer) == 431 and b"16384 bytes" in answer
    assert b"\r\nx-request-id: " in answer and b"\r\ncontent-type: application/json\r\n" in answer
    answer = raw(hardened, f"POST /endpoints/my-ep/score HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {big}\r\n\r\n".encode())
    assert status_of(answer) == 431
    # An unfinished header is refused as it grows, not buffered: the daemon answers and closes long
    # before 48 MB could arrive.
    with socket.create_connection(("127.0.0.1", hardened.port), timeout=5) as s:
        s.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
        sent, answer = 0, b""
        try:
            while sent < 48 << 20:
                s.sendall(b"y" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass
        with contextlib.suppress(ConnectionResetError):
            answer = s.recv(65536)
    assert sent < 4 << 20, f"{sent} bytes of one header were accepted"
    assert answer == b"" or status_of(answer) == 431
    # A large body is no part of the head, even when it arrives in the same packet.
    body = json.dumps({"data": [[5.1, 3.5, 1.4, 0.2]] * 3000}).encode()
    key = hardened.key("my-ep")
    answer = raw(hardened, b"POST /endpoints/my-ep/score HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                           b"Authorization: Bearer " + key.encode() + b"\r\nContent-Type: application/json\r\n"
                           b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    assert len(body) > 64 * 1024 and status_of(answer) == 200
    # Headers just under the limit are served.
    fine = "x" * (15 * 1024)
    assert httpx.get(hardened.url + "/api/v1/health", headers={"x-fine": fine}).status_code == 200


def test_slow_and_idle_connections_are_closed(hardened: Daemon) -> None:
    started = time.monotonic()
    answer = raw(hardened, b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ", timeout=10)
    assert status_of(answer) == 408 and time.monotonic() - started < 5
    key = hardened.key("my-ep")
    answer = raw(hardened, b"POST /endpoints/my-ep/score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n"
                           b"Authorization: Bearer " + key.encode() + b"\r\n\r\n{", timeout=10)
    assert status_of(answer) == 408  # a body that stops arriving
    assert raw(hardened, b"", timeout=10) == b""  # connected, said nothing: closed, without a word
    # An idle keep-alive connection after a request is closed too.
    with socket.create_connection(("127.0.0.1", hardened.port), timeout=10) as s:
        s.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = b""
        while b"}" not in first:  # the whole JSON answer, however many reads it takes
            first += s.recv(65536)
        assert status_of(first) == 200
        assert s.recv(65536) == b""  # then, a second later, the daemon closes it


HOLDER = textwrap.dedent("""
    import resource, selectors, socket, sys, time
    port, count = int(sys.argv[1]), int(sys.argv[2])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    held, failed = [], 0
    for _ in range(count):
        s = socket.socket()
        s.setblocking(False)
        if s.connect_ex(("127.0.0.1", port)) not in (0, 115):  # 115: EINPROGRESS
            failed += 1
            s.close()
            continue
        held.append(s)
    print(len(held), failed, flush=True)
    sys.stdin.read()  # hold them until told
""")


def test_twenty_thousand_idle_connections_do_not_lock_out_a_real_client(hardened: Daemon) -> None:
    """Two processes hold 10,000 idle connections each (more than this machine's limit of open files per
    process); the daemon keeps at most --max-connections open by closing the oldest idle ones, and a
    fresh client is served."""
    holders = [subprocess.Popen([sys.executable, "-c", HOLDER, str(hardened.port), "10000"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        for holder in holders:
            assert holder.stdout
            opened, _ = map(int, holder.stdout.readline().split())
            assert opened > 9000
        daemon = psutil.Process(hardened.proc.pid if hardened.proc else 0)
        assert daemon.num_fds() < 2000 + 600  # --max-connections, and what the daemon itself holds
        key = hardened.key("my-ep")
        response = hardened.score("my-ep", {"data": [[5.1, 3.5, 1.4, 0.2]]}, key=key)
        assert response.status_code == 200
        assert httpx.get(hardened.url + "/api/v1/health", timeout=10).status_code == 200
    finally:
        for holder in holders:
            holder.kill()
            holder.wait()
    wait_until(lambda: httpx.get(hardened.url + "/api/v1/health").status_code == 200, 10, "the daemon after")
