"""The gRPC side of the Open Inference Protocol: the messages muse uses, and a client.

The protocol's service is ``inference.GRPCInferenceService``. Instead of generated stubs
(which tie the package to one protoc/protobuf pairing), the few messages muse needs are
declared here as a descriptor, with the protocol's package, names and field numbers, and
their classes built by protobuf at import. Fields muse never sends or reads (parameters
maps, typed ``contents`` other than FP32/FP64) are left out: protobuf skips unknown fields
on the wire, so the messages stay compatible with Triton's and MLServer's full ones — a
test parses our bytes with ``tritonclient``'s generated classes to prove it.
"""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from muse.backends.v2_codec import (
    V2ProtocolError,
    decode_tensor,
    matrix_bytes,
    to_probabilities,
)
from muse.types import FeatureMatrix, ScoreArray

__all__ = ["SERVICE", "GrpcV2Client", "messages"]

SERVICE = "inference.GRPCInferenceService"

_F = descriptor_pb2.FieldDescriptorProto
_STRING, _BOOL, _INT64, _BYTES, _MSG = (
    _F.TYPE_STRING,
    _F.TYPE_BOOL,
    _F.TYPE_INT64,
    _F.TYPE_BYTES,
    _F.TYPE_MESSAGE,
)
_FLOAT, _DOUBLE = _F.TYPE_FLOAT, _F.TYPE_DOUBLE
_ONE, _MANY = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED

# (message, [(field, number, type, label, message type name or "")]); nested messages of
# the protocol are spelled Outer.Inner.
_MESSAGES: list[tuple[str, list[tuple[str, int, int, int, str]]]] = [
    ("ServerReadyRequest", []),
    ("ServerReadyResponse", [("ready", 1, _BOOL, _ONE, "")]),
    ("ModelReadyRequest", [("name", 1, _STRING, _ONE, ""), ("version", 2, _STRING, _ONE, "")]),
    ("ModelReadyResponse", [("ready", 1, _BOOL, _ONE, "")]),
    ("ServerMetadataRequest", []),
    (
        "ServerMetadataResponse",
        [
            ("name", 1, _STRING, _ONE, ""),
            ("version", 2, _STRING, _ONE, ""),
            ("extensions", 3, _STRING, _MANY, ""),
        ],
    ),
    (
        "InferTensorContents",
        [("fp32_contents", 6, _FLOAT, _MANY, ""), ("fp64_contents", 7, _DOUBLE, _MANY, "")],
    ),
    (
        "ModelInferRequest",
        [
            ("model_name", 1, _STRING, _ONE, ""),
            ("model_version", 2, _STRING, _ONE, ""),
            ("id", 3, _STRING, _ONE, ""),
            ("inputs", 5, _MSG, _MANY, ".inference.ModelInferRequest.InferInputTensor"),
            (
                "outputs",
                6,
                _MSG,
                _MANY,
                ".inference.ModelInferRequest.InferRequestedOutputTensor",
            ),
            ("raw_input_contents", 7, _BYTES, _MANY, ""),
        ],
    ),
    (
        "ModelInferRequest.InferInputTensor",
        [
            ("name", 1, _STRING, _ONE, ""),
            ("datatype", 2, _STRING, _ONE, ""),
            ("shape", 3, _INT64, _MANY, ""),
            ("contents", 5, _MSG, _ONE, ".inference.InferTensorContents"),
        ],
    ),
    ("ModelInferRequest.InferRequestedOutputTensor", [("name", 1, _STRING, _ONE, "")]),
    (
        "ModelInferResponse",
        [
            ("model_name", 1, _STRING, _ONE, ""),
            ("model_version", 2, _STRING, _ONE, ""),
            ("id", 3, _STRING, _ONE, ""),
            ("outputs", 5, _MSG, _MANY, ".inference.ModelInferResponse.InferOutputTensor"),
            ("raw_output_contents", 6, _BYTES, _MANY, ""),
        ],
    ),
    (
        "ModelInferResponse.InferOutputTensor",
        [
            ("name", 1, _STRING, _ONE, ""),
            ("datatype", 2, _STRING, _ONE, ""),
            ("shape", 3, _INT64, _MANY, ""),
            ("contents", 5, _MSG, _ONE, ".inference.InferTensorContents"),
        ],
    ),
]


def _build() -> dict[str, Any]:
    file = descriptor_pb2.FileDescriptorProto(
        name="muse_v2_inference.proto", package="inference", syntax="proto3"
    )
    tops: dict[str, descriptor_pb2.DescriptorProto] = {}
    for name, fields in _MESSAGES:
        outer, _, inner = name.partition(".")
        if inner:
            msg = tops[outer].nested_type.add(name=inner)
        else:
            msg = file.message_type.add(name=outer)
            tops[outer] = msg
        for fname, number, ftype, label, type_name in fields:
            field = msg.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                field.type_name = type_name
    # A private pool: a process that also imports tritonclient's generated classes (the
    # same full names in the default pool) must not clash with ours.
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"inference.{name}"))
        for name, _ in _MESSAGES
    }


#: Message classes by protocol name (``messages["ModelInferRequest"]`` …).
messages: dict[str, Any] = _build()


class GrpcV2Client:
    """One shared channel to a V2 gRPC endpoint (HTTP/2 multiplexes concurrent calls)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._channel = grpc.insecure_channel(
            target,
            options=[
                ("grpc.max_receive_message_length", 64 << 20),
                ("grpc.max_send_message_length", 64 << 20),
                ("grpc.enable_retries", 0),  # retries are the backend's decision
                # gRPC's reconnect backoff grows to 120 s by default: a restarted server
                # would stay unreachable long after it is back. Probe it every second.
                ("grpc.initial_reconnect_backoff_ms", 100),
                ("grpc.min_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", 1000),
            ],
        )
        self._calls = {
            method: self._channel.unary_unary(
                f"/{SERVICE}/{method}",
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=messages[f"{method}Response"].FromString,
            )
            for method in ("ServerReady", "ModelReady", "ServerMetadata", "ModelInfer")
        }

    def close(self) -> None:
        self._channel.close()

    def server_ready(self, timeout: float) -> bool:
        return bool(
            self._calls["ServerReady"](messages["ServerReadyRequest"](), timeout=timeout).ready
        )

    def model_ready(self, model: str, version: str, timeout: float) -> bool:
        request = messages["ModelReadyRequest"](name=model, version=version)
        return bool(self._calls["ModelReady"](request, timeout=timeout).ready)

    def infer(
        self,
        x: FeatureMatrix,
        *,
        model: str,
        version: str,
        input_name: str,
        datatype: str,
        output_name: str,
        timeout: float,
    ) -> ScoreArray:
        """One ``ModelInfer`` call for the rows of ``x``; probabilities, one per row."""
        request = build_infer_request(
            x,
            model=model,
            version=version,
            input_name=input_name,
            datatype=datatype,
            output_name=output_name,
        )
        response = self._calls["ModelInfer"](request, timeout=timeout)
        return read_infer_response(response, output_name, x.shape[0])


def build_infer_request(
    x: FeatureMatrix,
    *,
    model: str,
    version: str,
    input_name: str,
    datatype: str,
    output_name: str,
) -> Any:
    """A ``ModelInferRequest`` with the matrix as ``raw_input_contents`` (no per-value boxing)."""
    request = messages["ModelInferRequest"](model_name=model, model_version=version)
    tensor = request.inputs.add(name=input_name, datatype=datatype)
    tensor.shape.extend(x.shape)
    request.outputs.add(name=output_name)
    request.raw_input_contents.append(matrix_bytes(x, datatype))
    return request


def read_infer_response(response: Any, output_name: str, rows: int) -> ScoreArray:
    """The named output of a ``ModelInferResponse``: raw contents or typed contents."""
    for i, out in enumerate(response.outputs):
        if out.name != output_name:
            continue
        shape = list(out.shape)
        if len(response.raw_output_contents) > i:
            values = decode_tensor(response.raw_output_contents[i], out.datatype, shape)
        elif out.datatype == "FP32" and len(out.contents.fp32_contents):
            values = np.asarray(out.contents.fp32_contents, dtype=np.float64).reshape(shape)
        elif out.datatype == "FP64" and len(out.contents.fp64_contents):
            values = np.asarray(out.contents.fp64_contents, dtype=np.float64).reshape(shape)
        else:
            raise V2ProtocolError(f"output {output_name!r} came without data")
        return to_probabilities(values, rows, output_name)
    names = [o.name for o in response.outputs]
    raise V2ProtocolError(f"the response has no output {output_name!r}; it has {names}")
