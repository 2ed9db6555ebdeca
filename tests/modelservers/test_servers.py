"""Real Triton and MLServer, driven by the reference V2 client (tritonclient).

What these pin for a KServe V2 client of muse's test servers: both servers score exactly
like the in-process LightGBM backend over HTTP (JSON and, for Triton only, the binary
tensor extension) and gRPC; the tensors each one declares; that Triton's dynamic batcher
keeps concurrent requests apart; that nothing listens beyond 127.0.0.1; and that a server
stopped or killed comes back on the same ports.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import json
import os
import signal
import socket
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from muse.testing import (
    MLSERVER_OUTPUT,
    TRITON_INPUT,
    TRITON_OUTPUT,
    ModelServerError,
    RunningServer,
    ServerKind,
    mlserver_settings,
    start_mlserver,
    start_triton,
    triton_repository,
)
from tests.modelservers.support import M1, Rows, StartServer

#: Served scores are FP32 (Triton) or FP64 (MLServer) renderings of the same float64 score.
ATOL = 1e-6


def _http_infer(
    server: RunningServer, X: npt.NDArray[np.float32], output: str, *, binary: bool
) -> tuple[npt.NDArray[Any], dict[str, Any]]:
    client = httpclient.InferenceServerClient(server.http_target)
    try:
        tensor = httpclient.InferInput(TRITON_INPUT, list(X.shape), "FP32")
        tensor.set_data_from_numpy(X, binary_data=binary)
        wanted = httpclient.InferRequestedOutput(output, binary_data=binary)
        result = client.infer("m1", [tensor], outputs=[wanted])
        return result.as_numpy(output), result.get_output(output)
    finally:
        client.close()


def _grpc_infer(
    server: RunningServer, X: npt.NDArray[np.float32], output: str
) -> tuple[npt.NDArray[Any], str]:
    client = grpcclient.InferenceServerClient(server.grpc_target)
    try:
        tensor = grpcclient.InferInput(TRITON_INPUT, list(X.shape), "FP32")
        tensor.set_data_from_numpy(X)
        result = client.infer("m1", [tensor], outputs=[grpcclient.InferRequestedOutput(output)])
        return result.as_numpy(output), result.get_output(output).datatype
    finally:
        client.close()


def _assert_scores(scores: npt.NDArray[Any], rows: Rows) -> None:
    assert scores.shape == (len(rows.expected), 1), "V2 outputs here are [-1, 1]"
    np.testing.assert_allclose(scores[:, 0], rows.expected, rtol=0, atol=ATOL)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_triton_http_scores_equal_in_process(
    triton_server: RunningServer, rows: Rows, binary: bool
) -> None:
    scores, output = _http_infer(triton_server, rows.features, TRITON_OUTPUT, binary=binary)
    assert output["datatype"] == "FP32"
    assert ("binary_data_size" in output.get("parameters", {})) is binary
    assert scores.dtype == np.float32
    _assert_scores(scores, rows)


def test_triton_grpc_scores_equal_in_process(triton_server: RunningServer, rows: Rows) -> None:
    scores, datatype = _grpc_infer(triton_server, rows.features, TRITON_OUTPUT)
    assert datatype == "FP32"
    _assert_scores(scores, rows)


def test_mlserver_http_scores_equal_in_process(mlserver_server: RunningServer, rows: Rows) -> None:
    scores, output = _http_infer(mlserver_server, rows.features, MLSERVER_OUTPUT, binary=False)
    assert output["datatype"] == "FP64"
    assert scores.dtype == np.float64
    _assert_scores(scores, rows)


def test_mlserver_grpc_scores_equal_in_process(mlserver_server: RunningServer, rows: Rows) -> None:
    scores, datatype = _grpc_infer(mlserver_server, rows.features, MLSERVER_OUTPUT)
    assert datatype == "FP64"
    _assert_scores(scores, rows)


@pytest.mark.parametrize(
    ("kind", "model", "output"),
    [("triton", "m1_fp64", TRITON_OUTPUT), ("mlserver", "m1", MLSERVER_OUTPUT)],
)
def test_fp64_inputs_score_exactly_like_in_process(
    request: pytest.FixtureRequest, rows: Rows, kind: ServerKind, model: str, output: str
) -> None:
    """FP64 end to end: no rounding of features or scores, so the scores are identical."""
    server: RunningServer = request.getfixturevalue(f"{kind}_server")
    client = httpclient.InferenceServerClient(server.http_target)
    try:
        tensor = httpclient.InferInput(TRITON_INPUT, list(rows.features64.shape), "FP64")
        tensor.set_data_from_numpy(rows.features64, binary_data=kind == "triton")
        result = client.infer(model, [tensor])
    finally:
        client.close()
    scores = result.as_numpy(output)
    assert scores.dtype == np.float64
    assert scores.shape == (len(rows.expected64), 1)
    np.testing.assert_array_equal(scores[:, 0], rows.expected64)


def test_mlserver_refuses_binary_tensor_extension(
    mlserver_server: RunningServer, rows: Rows
) -> None:
    """MLServer's REST API takes JSON only: a binary-extension body is a 422 from FastAPI."""
    with pytest.raises(InferenceServerException) as caught:
        _http_infer(mlserver_server, rows.features[:3], MLSERVER_OUTPUT, binary=True)
    assert caught.value.status() == "422"
    assert "JSON decode error" in caught.value.message()


def test_mlserver_ignores_binary_output_request(mlserver_server: RunningServer, rows: Rows) -> None:
    """Asked for a binary output, MLServer answers in JSON; the client still decodes it."""
    client = httpclient.InferenceServerClient(mlserver_server.http_target)
    try:
        tensor = httpclient.InferInput(TRITON_INPUT, list(rows.features.shape), "FP32")
        tensor.set_data_from_numpy(rows.features, binary_data=False)
        wanted = httpclient.InferRequestedOutput(MLSERVER_OUTPUT, binary_data=True)
        result = client.infer("m1", [tensor], outputs=[wanted])
    finally:
        client.close()
    assert "data" in result.get_output(MLSERVER_OUTPUT)
    _assert_scores(result.as_numpy(MLSERVER_OUTPUT), rows)


@pytest.mark.parametrize(
    ("kind", "output", "datatype"),
    [("triton", TRITON_OUTPUT, "FP32"), ("mlserver", MLSERVER_OUTPUT, "FP64")],
)
def test_metadata_describes_the_tensors(
    request: pytest.FixtureRequest, kind: ServerKind, output: str, datatype: str
) -> None:
    server: RunningServer = request.getfixturevalue(f"{kind}_server")
    client = httpclient.InferenceServerClient(server.http_target)
    try:
        metadata = client.get_model_metadata("m1")
        assert client.is_model_ready("m1", "1")
    finally:
        client.close()
    assert metadata["inputs"] == [{"name": TRITON_INPUT, "datatype": "FP32", "shape": [-1, 8]}]
    assert metadata["outputs"] == [{"name": output, "datatype": datatype, "shape": [-1, 1]}]


def test_triton_refuses_a_wrong_feature_count(triton_server: RunningServer, rows: Rows) -> None:
    with pytest.raises(InferenceServerException) as caught:
        _http_infer(triton_server, rows.features[:2, :7], TRITON_OUTPUT, binary=True)
    assert caught.value.status() == "400"
    assert "Expected [-1,8], got [2,7]" in caught.value.message()


def test_triton_dynamic_batching_keeps_concurrent_requests_apart(
    triton_server: RunningServer, rows: Rows
) -> None:
    """Requests of different sizes in flight together each get back exactly their own rows."""
    bounds = [0, 1, 4, 20, 21, 60, 130, 131, 200, 300]
    client = httpclient.InferenceServerClient(triton_server.http_target, concurrency=len(bounds))
    try:
        pending = []
        for lo, hi in itertools.pairwise(bounds):
            tensor = httpclient.InferInput(TRITON_INPUT, [hi - lo, 8], "FP32")
            tensor.set_data_from_numpy(rows.features[lo:hi], binary_data=True)
            pending.append((lo, hi, client.async_infer("m1", [tensor])))
        for lo, hi, request in pending:
            scores = request.get_result(timeout=30).as_numpy(TRITON_OUTPUT)
            assert scores.shape == (hi - lo, 1)
            np.testing.assert_allclose(scores[:, 0], rows.expected[lo:hi], rtol=0, atol=ATOL)
    finally:
        client.close()


def _process_group(pgid: int) -> set[int]:
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[2]) == pgid:
                pids.add(int(entry.name))
    return pids


def _listening(pgid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state held by a process of the group."""
    inodes = set()
    for pid in _process_group(pgid):
        fds = Path(f"/proc/{pid}/fd")
        for fd in fds.iterdir() if fds.exists() else ():
            target = os.readlink(fd) if fd.is_symlink() else ""
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            hex_ip, hex_port = local.split(":")
            raw = bytes.fromhex(hex_ip)
            # /proc prints the address as host-order 32-bit words.
            packed = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            ip = ipaddress.ip_address(packed)
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
            found.add((str(ip), int(hex_port, 16)))
    return found


@pytest.mark.parametrize("kind", ["triton", "mlserver"])
def test_servers_listen_on_loopback_only(request: pytest.FixtureRequest, kind: ServerKind) -> None:
    """HTTP and gRPC on 127.0.0.1, and nothing else: no metrics port, no wildcard address."""
    server: RunningServer = request.getfixturevalue(f"{kind}_server")
    listening = _listening(server.pid)
    assert listening == {("127.0.0.1", server.http_port), ("127.0.0.1", server.grpc_port)}


def _shm_mapped(pgid: int) -> set[Path]:
    """Files of /dev/shm mapped by a process of the group (Triton's regions, semaphores)."""
    mapped = set()
    for pid in _process_group(pgid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
                if " /dev/shm/" in line:
                    mapped.add(Path(line[line.index("/dev/shm/") :].removesuffix(" (deleted)")))
    return mapped


def _refuses(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return False
    except ConnectionRefusedError:
        return True


def _assert_down(server: RunningServer) -> None:
    assert not server.running
    assert not server.is_ready(timeout=1.0)
    assert _refuses(server.http_port)
    assert _refuses(server.grpc_port)


@pytest.mark.parametrize("kind", ["triton", "mlserver"])
def test_restart_on_the_same_ports(start_server: StartServer, rows: Rows, kind: ServerKind) -> None:
    """Stopped (SIGTERM) or killed (SIGKILL, a crash) with a client connected, a server comes
    back on the same ports and scores as before."""
    server = start_server(kind)
    output = TRITON_OUTPUT if kind == "triton" else MLSERVER_OUTPUT
    ports, pids = (server.http_port, server.grpc_port), {server.pid}
    client = grpcclient.InferenceServerClient(server.grpc_target)
    try:
        for end, status in ((server.stop, 0), (server.kill, -signal.SIGKILL)):
            tensor = grpcclient.InferInput(TRITON_INPUT, [5, 8], "FP32")
            tensor.set_data_from_numpy(rows.features[:5])
            client.infer("m1", [tensor])  # the connection is open when the server goes down
            shared_memory = _shm_mapped(server.pid)
            assert shared_memory, "Triton's stub regions / MLServer's worker semaphores"
            assert end() == status  # 0: SIGTERM was enough, nothing had to be killed
            _assert_down(server)
            assert not [p for p in shared_memory if p.exists()], "left in /dev/shm"
            server.restart()
            assert (server.http_port, server.grpc_port) == ports
            assert server.pid not in pids
            pids.add(server.pid)
            assert server.is_ready()
            scores, _ = _grpc_infer(server, rows.features, output)
            _assert_scores(scores, rows)
    finally:
        client.close()


def test_triton_start_failure_reports_the_model_error(tmp_path: Path) -> None:
    repository = triton_repository({"m1": M1}, tmp_path / "repository")
    (repository / "m1" / "1" / "model.txt").write_text("not a LightGBM model\n")
    with pytest.raises(ModelServerError, match="exited with code 1 before it was ready") as caught:
        start_triton(repository, deadline_s=60)
    message = str(caught.value)
    assert "failed to load 'm1'" in message
    assert "Unknown model format" in message  # LightGBM's own words, from model.py


def test_a_model_failing_its_warm_up_inference_fails_the_start(tmp_path: Path) -> None:
    """The warm-up row follows the declared metadata: declaring 7 features makes it fail."""
    folder = mlserver_settings({"m1": M1}, tmp_path / "mlserver", parallel_workers=0)
    settings = folder / "m1" / "model-settings.json"
    doc = json.loads(settings.read_text())
    doc["inputs"][0]["shape"] = [-1, 7]
    settings.write_text(json.dumps(doc))
    with pytest.raises(ModelServerError, match=r"(?s)warming up model 'm1'.*number of features"):
        start_mlserver(folder, deadline_s=60)
    with start_mlserver(folder, deadline_s=60, warm_up=False) as server:
        assert server.is_ready()
