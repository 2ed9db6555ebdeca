"""The ``kserve-v2`` backend against real Triton and MLServer: equal scores, one request per
chunk, the binary extension where announced, and failures that cost microseconds."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import tritonclient.http as triton_http

from muse.backends import ModelPool, ModelSpec
from muse.backends.kserve_v2 import KServeV2Backend
from muse.backends.v2_codec import encode_http_request
from muse.errors import BackendError
from muse.testing import RunningServer
from tests.modelservers.support import M1, Rows, StartServer

FEATURES = tuple(ModelPool().get(ModelSpec(kind="lightgbm", path=M1)).feature_names)


def remote(
    server: RunningServer,
    *,
    protocol: str = "http",
    model: str = "m1",
    output: str = "probability",
    datatype: str = "FP32",
    **extra: str,
) -> KServeV2Backend:
    url = server.http_url if protocol == "http" else server.grpc_target
    options = {
        "url": url,
        "protocol": protocol,
        "model": model,
        "version": "1",
        "input_name": "features",
        "output_name": output,
        "datatype": datatype,
        **extra,
    }
    backend = KServeV2Backend.load(
        ModelSpec(
            kind="kserve-v2",
            path=M1,
            features=FEATURES,
            options=tuple(sorted(options.items())),
        )
    )
    deadline = time.monotonic() + 30
    while not backend.ready() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert backend.ready()
    return backend


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_triton_scores_equal_in_process(
    triton_server: RunningServer, rows: Rows, protocol: str
) -> None:
    backend = remote(triton_server, protocol=protocol)
    got = backend.predict(rows.features.astype(np.float64))
    assert np.abs(got - rows.expected).max() < 1e-6
    exact = remote(triton_server, protocol=protocol, model="m1_fp64", datatype="FP64")
    assert np.abs(exact.predict(rows.features64) - rows.expected64).max() < 1e-6


def test_mlserver_scores_equal_in_process(mlserver_server: RunningServer, rows: Rows) -> None:
    backend = remote(mlserver_server, output="predict")
    got = backend.predict(rows.features.astype(np.float64))
    assert np.abs(got - rows.expected).max() < 1e-6


def test_binary_extension_is_used_only_where_announced(
    triton_server: RunningServer, mlserver_server: RunningServer
) -> None:
    assert remote(triton_server)._server.binary is True
    assert remote(mlserver_server, output="predict")._server.binary is False


def test_one_request_per_chunk_of_a_batch(triton_server: RunningServer, rows: Rows) -> None:
    backend = remote(triton_server, max_batch_size="64")
    before = backend.calls
    got = backend.predict(rows.features.astype(np.float64))
    assert backend.calls - before == -(-len(rows.expected) // 64)
    assert np.abs(got - rows.expected).max() < 1e-6


def test_our_binary_body_is_what_the_reference_client_sends(rows: Rows) -> None:
    x = rows.features[:5]
    ours, header_length = encode_http_request(
        x.astype(np.float64),
        input_name="features",
        datatype="FP32",
        output_name="probability",
        binary=True,
    )
    tensor = triton_http.InferInput("features", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=True)
    wanted = triton_http.InferRequestedOutput("probability", binary_data=True)
    theirs, their_length = triton_http.InferenceServerClient.generate_request_body(
        [tensor], outputs=[wanted]
    )
    assert header_length is not None
    assert their_length is not None
    assert json.loads(ours[:header_length]) == json.loads(theirs[:their_length])
    assert ours[header_length:] == theirs[their_length:]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_dead_server_fails_fast_and_recovers_without_a_reload(
    start_server: StartServer, rows: Rows, protocol: str
) -> None:
    server = start_server("triton")
    backend = remote(
        server, protocol=protocol, breaker_failures="2", breaker_reset_s="0.5", retries="1"
    )
    x = rows.features[:10].astype(np.float64)
    assert np.abs(backend.predict(x) - rows.expected[:10]).max() < 1e-6
    server.kill()
    for _ in range(2):  # connection refused (retried once), counted by the breaker
        with pytest.raises(BackendError, match="failed"):
            backend.predict(x)
    assert backend.breaker.state == "open"
    t = time.perf_counter()
    with pytest.raises(BackendError, match="circuit breaker is open"):
        backend.predict(x)
    assert time.perf_counter() - t < 0.005  # no network at all (typically ~20 µs)
    server.restart()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            got = backend.predict(x)
            break
        except BackendError:
            time.sleep(0.1)
    else:
        pytest.fail("scoring did not recover after the server came back")
    assert np.abs(got - rows.expected[:10]).max() < 1e-6
    assert backend.breaker.state == "closed"
