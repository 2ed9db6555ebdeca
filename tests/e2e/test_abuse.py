"""Slow and abusive clients against a started ``muse serve`` (keys on, ``--request-timeout
1``), over raw sockets where an HTTP client would be too polite. Each gets a bounded,
documented outcome — connection closed, 408, 413, 401 — while a well-behaved client keeps
being served (docs/reliability.md §2; ``benchmarks/abuse.py`` measures its latency)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.e2e.support import Deployment, MuseProcess, event, metric_value
from tests.e2e.test_auth import BANK1_KEY, bearer, with_keys

TIMEOUT_S = 1.0
#: How long past the deadline a close may come (a loaded 2-core machine's scheduling).
SLACK_S = 2.0


@dataclass(frozen=True)
class Served:
    server: MuseProcess
    client: httpx.Client
    #: Every socket a test opened, closed after it (the server may have closed them first).
    sockets: list[socket.socket]

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.server.port), timeout=10)
        sock.settimeout(TIMEOUT_S + SLACK_S + 5)
        self.sockets.append(sock)
        return sock

    def score(self, event_id: str) -> httpx.Response:
        return self.client.post(
            "/v1/score", json=event(event_id, "bank1"), headers=bearer(BANK1_KEY)
        )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    d = with_keys(Deployment.copy_quickstart(tmp_path_factory.mktemp("abuse")))
    server = MuseProcess(
        d.config, d.root / "serve.log", extra_args=["--request-timeout", str(TIMEOUT_S)]
    ).start()
    try:
        with server.client() as client:
            yield Served(server, client, [])
    finally:
        server.stop_gracefully()


@pytest.fixture(autouse=True)
def close_sockets(served: Served) -> Iterator[None]:
    yield
    while served.sockets:
        served.sockets.pop().close()


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def read_response(sock: socket.socket, buffer: bytearray) -> tuple[bytes, bytes]:
    """One response off a kept-alive connection: its head and its body (by
    content-length); ``buffer`` carries bytes already received past it."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed mid-response: {bytes(buffer)!r}"
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    length = int(
        next(
            line.split(b":")[1]
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
    )
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-body"
        rest += chunk
    buffer[:] = rest[length:]
    return head, rest[:length]


def request_head(body_length: int, *, key: str = BANK1_KEY) -> bytes:
    return (
        f"POST /v1/score HTTP/1.1\r\nhost: muse\r\nauthorization: Bearer {key}\r\n"
        f"content-type: application/json\r\ncontent-length: {body_length}\r\n\r\n"
    ).encode()


def trickle(sock: socket.socket, data: bytes, every_s: float) -> bytes:
    """Send ``data`` a byte every ``every_s`` until the server closes (or past the
    deadline and its slack); then what the server answered."""
    started = time.monotonic()
    for i in range(len(data)):
        try:
            sock.sendall(data[i : i + 1])
        except OSError:
            break
        time.sleep(every_s)
        if time.monotonic() - started > TIMEOUT_S + SLACK_S:
            break
    return read_all(sock)


def closed_count(served: Served, reason: str) -> float:
    text = served.client.get("/metrics").text
    return metric_value(text, "muse_connections_closed_total", reason=reason)


def test_a_connection_that_sends_nothing_is_closed_after_the_timeout(served: Served) -> None:
    before = closed_count(served, "idle")
    sock = served.connect()
    started = time.monotonic()
    assert read_all(sock) == b""  # closed, nothing said: nothing was asked
    assert TIMEOUT_S * 0.9 <= time.monotonic() - started <= TIMEOUT_S + SLACK_S
    assert closed_count(served, "idle") == before + 1


def test_slowloris_headers_get_408_and_the_connection_closed(served: Served) -> None:
    sock = served.connect()
    started = time.monotonic()
    answer = trickle(sock, request_head(10), 0.1)  # the whole head would take 20 s
    assert time.monotonic() - started <= TIMEOUT_S + SLACK_S + 0.5
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"connection: close" in answer
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert body["error"]["code"] == "request_timeout"


def test_a_trickled_body_gets_408(served: Served) -> None:
    before = closed_count(served, "body_timeout")
    body = json.dumps(event("slow", "bank1")).encode()
    sock = served.connect()
    sock.sendall(request_head(len(body)))
    answer = trickle(sock, body, 0.05)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert closed_count(served, "body_timeout") == before + 1


def test_a_request_that_arrives_in_time_is_served_on_a_kept_alive_connection(
    served: Served,
) -> None:
    """The deadline is per request: a keep-alive connection serving requests for longer
    than the timeout in all is never cut."""
    body = json.dumps(event("kept", "bank1")).encode()
    sock = served.connect()
    started = time.monotonic()
    n = 0
    buffer = bytearray()
    while time.monotonic() - started < TIMEOUT_S * 2.5:
        sock.sendall(request_head(len(body)) + body)
        head, answer = read_response(sock, buffer)
        assert head.startswith(b"HTTP/1.1 200 "), head
        assert json.loads(answer)["event_id"] == "kept"
        n += 1
        time.sleep(0.2)
    assert n >= 10


def test_pipelined_requests_are_answered_in_order(served: Served) -> None:
    bodies = [json.dumps(event(f"pipe-{i}", "bank1")).encode() for i in range(3)]
    sock = served.connect()
    sock.sendall(b"".join(request_head(len(b)) + b for b in bodies))
    buffer = bytearray()
    answers = [read_response(sock, buffer) for _ in bodies]
    assert all(head.startswith(b"HTTP/1.1 200 ") for head, _ in answers)
    assert [json.loads(body)["event_id"] for _, body in answers] == ["pipe-0", "pipe-1", "pipe-2"]


def test_large_bodies_are_refused_before_they_are_read(served: Served) -> None:
    """A flood of 50 MB bodies (the limit is 1 MB): each gets 413 on its headers alone and
    its connection is closed, so no upload is waited for."""
    answers: list[bytes] = []
    elapsed: list[float] = []

    def flood() -> None:
        sock = served.connect()
        started = time.monotonic()
        sock.sendall(request_head(50_000_000) + b"{" * 1000)
        answers.append(read_all(sock))
        elapsed.append(time.monotonic() - started)

    threads = [threading.Thread(target=flood) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(answers) == 20
    assert all(a.startswith(b"HTTP/1.1 413 ") for a in answers), answers[0]
    assert all(b"connection: close" in a for a in answers)
    assert max(elapsed) < TIMEOUT_S  # answered on the headers, not by a deadline
    assert served.score("after-flood").status_code == 200


def test_many_idle_connections_do_not_stop_a_well_behaved_client(served: Served) -> None:
    before = closed_count(served, "idle")
    idle = [served.connect() for _ in range(300)]
    latencies = []
    for i in range(100):
        started = time.perf_counter()
        r = served.score(f"busy-{i}")
        latencies.append(time.perf_counter() - started)
        assert r.status_code == 200, r.text
    assert sorted(latencies)[98] < 0.5
    # Every idle connection is closed by the deadline.
    for sock in idle:
        assert read_all(sock) == b""
    assert closed_count(served, "idle") >= before + 300


def test_a_burst_of_wrong_keys_gets_401_and_the_server_keeps_serving(served: Served) -> None:
    body = event("nokey", "bank1")
    statuses = set()
    for i in range(500):
        key = f"e2e-wrong-{i:04d}-{'x' * 30}"
        statuses.add(served.client.post("/v1/score", json=body, headers=bearer(key)).status_code)
    assert statuses == {401}
    assert served.score("after-keys").status_code == 200
