"""Tensors over the Open Inference Protocol (KServe V2): numpy ↔ request/response bodies.

One place encodes feature matrices and decodes probabilities, for HTTP/JSON, HTTP with
the binary tensor data extension, and gRPC (``raw_input_contents``), so the three
transports cannot disagree on byte order, shape or dtype.

Why hand-written: the protocol's encodings are a few lines each, while the reference
client (``tritonclient``) pulls in gevent and its own connection handling, which would
fight the service's event loop and pooling. The tests check these bodies against
``tritonclient``'s own encoder and against real Triton and MLServer servers.

Binary tensor data (V2 extension "binary_tensor_data"): the JSON header is followed by
the raw little-endian row-major tensor bytes; ``Inference-Header-Content-Length`` gives
the JSON header's length, and a tensor's ``parameters.binary_data_size`` its byte count.
"""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np

from muse.types import FeatureMatrix, ScoreArray

__all__ = [
    "DATATYPES",
    "HEADER_LENGTH",
    "V2ProtocolError",
    "decode_http_response",
    "decode_tensor",
    "encode_http_request",
    "matrix_bytes",
    "to_probabilities",
]

#: V2 datatype → numpy little-endian dtype, for the inputs muse sends and outputs it reads.
DATATYPES: dict[str, np.dtype[Any]] = {
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
#: HTTP header carrying the JSON part's length when binary tensors follow it.
HEADER_LENGTH = "inference-header-content-length"

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


class V2ProtocolError(ValueError):
    """A server's answer that does not follow the protocol (or the model's declared output)."""


def matrix_bytes(x: FeatureMatrix, datatype: str) -> bytes:
    """The matrix as the protocol's raw tensor bytes: little-endian, row-major, no padding."""
    return np.ascontiguousarray(x, dtype=DATATYPES[datatype]).tobytes()


def encode_http_request(
    x: FeatureMatrix,
    *,
    input_name: str,
    datatype: str,
    output_name: str,
    binary: bool,
) -> tuple[bytes, int | None]:
    """The body of ``POST /v2/models/<m>/infer`` for the rows of ``x``, and the JSON header
    length when the body carries binary tensors (``None``: plain JSON).

    Plain JSON sends the values as a flat row-major list (the protocol allows flat or
    nested; flat is what every server accepts and the cheapest to produce).
    """
    rows, cols = x.shape
    tensor: dict[str, Any] = {"name": input_name, "shape": [rows, cols], "datatype": datatype}
    output: dict[str, Any] = {"name": output_name}
    if not binary:
        values = np.asarray(x, dtype=DATATYPES[datatype]).ravel().tolist()
        tensor["data"] = values
        return _encoder.encode({"inputs": [tensor], "outputs": [output]}), None
    raw = matrix_bytes(x, datatype)
    tensor["parameters"] = {"binary_data_size": len(raw)}
    output["parameters"] = {"binary_data": True}
    header = _encoder.encode({"inputs": [tensor], "outputs": [output]})
    return header + raw, len(header)


def decode_http_response(
    body: bytes, header_length: int | None, output_name: str, rows: int
) -> ScoreArray:
    """The named output of an inference response as float64 probabilities, one per row.

    Accepts JSON ``data`` and binary tensors (when ``header_length`` is given); a model
    output of shape ``[rows]``, ``[rows, 1]`` or ``[rows, 2]`` (class probabilities: the
    positive class is the second column) is reduced to one probability per row.
    """
    head = body if header_length is None else body[:header_length]
    try:
        doc = _decoder.decode(head)
    except msgspec.DecodeError as e:
        raise V2ProtocolError(f"the inference response is not valid JSON: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("outputs"), list):
        raise V2ProtocolError("the inference response has no 'outputs' list")
    offset = 0 if header_length is None else header_length
    for out in doc["outputs"]:
        if not isinstance(out, dict):
            raise V2ProtocolError("an entry of 'outputs' is not an object")
        size = (out.get("parameters") or {}).get("binary_data_size")
        if out.get("name") != output_name:
            if size is not None:
                offset += int(size)
            continue
        datatype = out.get("datatype")
        shape = out.get("shape")
        if size is not None:
            if header_length is None:
                raise V2ProtocolError(
                    "a binary output came without Inference-Header-Content-Length"
                )
            raw = body[offset : offset + int(size)]
            values = decode_tensor(raw, datatype, shape)
        else:
            values = np.asarray(out.get("data"), dtype=np.float64)
            values = _reshape(values, shape)
        return to_probabilities(values, rows, output_name)
    names = [o.get("name") for o in doc["outputs"] if isinstance(o, dict)]
    raise V2ProtocolError(f"the response has no output {output_name!r}; it has {names}")


def decode_tensor(raw: bytes, datatype: object, shape: object) -> np.ndarray:
    """Raw tensor bytes (binary extension or gRPC ``raw_output_contents``) as an array."""
    if datatype not in DATATYPES:
        raise V2ProtocolError(
            f"output datatype {datatype!r} is not supported; expected one of {sorted(DATATYPES)}"
        )
    dtype = DATATYPES[str(datatype)]
    if len(raw) % dtype.itemsize:
        raise V2ProtocolError(f"{len(raw)} bytes are not a whole number of {datatype} values")
    return _reshape(np.frombuffer(raw, dtype=dtype).astype(np.float64), shape)


def _reshape(values: np.ndarray, shape: object) -> np.ndarray:
    if not isinstance(shape, list) or not all(isinstance(d, int) for d in shape):
        raise V2ProtocolError(f"output shape must be a list of ints, got {shape!r}")
    if int(np.prod(shape)) != values.size:
        raise V2ProtocolError(f"output shape {shape} does not hold {values.size} values")
    return values.reshape(shape)


def to_probabilities(values: np.ndarray, rows: int, name: str) -> ScoreArray:
    if values.ndim == 1 and values.shape[0] == rows:
        return values
    if values.ndim == 2 and values.shape[0] == rows and values.shape[1] in (1, 2):
        return np.ascontiguousarray(values[:, -1])
    raise V2ProtocolError(
        f"output {name!r} has shape {list(values.shape)}; expected [{rows}], [{rows}, 1] or "
        f"[{rows}, 2] (one positive-class probability per row)"
    )
