"""The request's latency budget caps a remote call's deadline.

The model server here is a stand-in that answers V2 inference requests after a delay: the
code under test is the client's deadline handling, and a real server cannot be made slow
on demand. (Real Triton and MLServer are exercised in tests/modelservers.)
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from muse.backends import ModelSpec
from muse.backends.base import REQUEST_DEADLINE
from muse.backends.kserve_v2 import KServeV2Backend
from muse.errors import BackendError

DELAY_S = 0.3


class _Slow(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers["content-length"])
        request = json.loads(self.rfile.read(length))
        rows = request["inputs"][0]["shape"][0]
        time.sleep(DELAY_S)
        body = json.dumps(
            {
                "model_name": "slow",
                "outputs": [
                    {
                        "name": "probability",
                        "datatype": "FP64",
                        "shape": [rows],
                        "data": [0.25] * rows,
                    }
                ],
            }
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def slow_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def backend(url: str) -> KServeV2Backend:
    options = {
        "url": url,
        "model": "slow",
        "version": "1",
        "timeout_ms": "2000",
        "binary": "off",
        "breaker_failures": "5",
    }
    return KServeV2Backend.load(
        ModelSpec(
            kind="kserve-v2",
            path=Path("slow"),
            features=("a", "b"),
            options=tuple(options.items()),
        )
    )


X = np.zeros((3, 2))


def test_without_a_budget_the_model_timeout_applies(slow_url: str) -> None:
    assert backend(slow_url).predict(X).tolist() == [0.25, 0.25, 0.25]


def test_the_request_budget_cuts_the_call_short(slow_url: str) -> None:
    b = backend(slow_url)
    token = REQUEST_DEADLINE.set(time.perf_counter() + 0.1)
    try:
        t = time.perf_counter()
        with pytest.raises(BackendError, match="failed"):
            b.predict(X)
        elapsed = time.perf_counter() - t
    finally:
        REQUEST_DEADLINE.reset(token)
    assert 0.08 <= elapsed < DELAY_S  # gave up at the budget, not at timeout_ms (2 s)
    assert b.breaker.failures == 1


def test_a_spent_budget_does_not_call_and_does_not_blame_the_server(slow_url: str) -> None:
    b = backend(slow_url)
    token = REQUEST_DEADLINE.set(time.perf_counter() - 0.001)
    try:
        calls = b.calls
        with pytest.raises(BackendError, match="latency budget is spent"):
            b.predict(X)
    finally:
        REQUEST_DEADLINE.reset(token)
    assert b.calls == calls
    assert b.breaker.failures == 0
