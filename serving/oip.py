"""The Open Inference Protocol (KServe V2, Triton) REST wire format.

An infer request is JSON, or JSON followed by raw little-endian tensor bytes
(the binary tensor extension; the JSON's length is in the
Inference-Header-Content-Length header). This module turns such a body into
the model's (n, 64) float32 pixels and the answer back into bytes, the same two
ways. No Flask here: routes hand in bytes and a header and get bytes back.

Names, datatypes and shapes come from the loaded model (its graph and
metadata_props), so a re-exported model describes itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from marshmallow import EXCLUDE, Schema, ValidationError, fields, pre_load, validate

from contract import INPUT_NAME, INPUT_SIZE, OUTPUT_NAME, MetadataKey
from serving.http import InvalidInput, parse_json_body
from serving.model import ModelInfo
from serving.validation import (
    checked_pixel_values,
    json_type_name,
    to_pixel_array,
    to_pixel_matrix,
)

HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY_MIMETYPE = "application/octet-stream"
PLATFORM = "onnxruntime_onnx"  # what Triton calls a model run by onnxruntime
EXTENSIONS = ["binary_tensor_data"]
# ONNX element types the graph may declare, as the protocol names them.
DATATYPES = {"tensor(float)": "FP32"}
WIRE_DTYPES = {"FP32": np.dtype("<f4")}
# Far above any valid request (one input, one output, two dimensions), and
# checked before marshmallow walks a list item by item: a 1 MB shape list would
# otherwise cost a worker about a second before it is refused.
MAX_TENSORS = 8
MAX_DIMS = 8
MAX_PARAMETERS = 32


def check_lengths(data: object, limits: dict[str, int]) -> None:
    """Refuse lists and objects in `data` longer than their limit, by key."""
    if not isinstance(data, dict):
        return  # marshmallow reports the wrong type
    errors = {
        key: [f"at most {limit} items, got {len(data[key])}"]
        for key, limit in limits.items()
        if isinstance(data.get(key), list | dict) and len(data[key]) > limit
    }
    if errors:
        raise ValidationError(errors)


def datatype(onnx_type: str) -> str:
    """The protocol's name for an ONNX tensor type (the model check allows float)."""
    return DATATYPES[onnx_type]


def protocol_shape(shape: list[int | str | None]) -> list[int]:
    """The graph's shape with its named or unknown dimensions as -1."""
    return [dim if isinstance(dim, int) else -1 for dim in shape]


def model_metadata(info: ModelInfo) -> dict[str, Any]:
    """Body of GET /v2/models/{name}: the model's name, version and tensors."""
    return {
        "name": info.metadata[MetadataKey.MODEL_NAME],
        "versions": [info.metadata[MetadataKey.MODEL_VERSION]],
        "platform": PLATFORM,
        "inputs": [
            {
                "name": info.input_name,
                "datatype": datatype(info.input_type),
                "shape": protocol_shape(info.input_shape),
            }
        ],
        "outputs": [
            {
                "name": info.output_name,
                "datatype": datatype(info.output_type),
                "shape": protocol_shape(info.output_shape),
            }
        ],
    }


class InferInputSchema(Schema):
    """One input tensor of an infer request."""

    name = fields.String(required=True, metadata={"example": INPUT_NAME})
    shape = fields.List(
        fields.Integer(strict=True, validate=validate.Range(min=0)),
        required=True,
        metadata={"example": [1, INPUT_SIZE]},
    )
    datatype = fields.String(required=True, metadata={"example": "FP32"})
    parameters = fields.Dict(
        keys=fields.String(),
        load_default=dict,
        metadata={
            "description": "binary_data_size: bytes of this tensor after "
            "the JSON header (binary tensor extension)"
        },
    )
    data = fields.Raw(
        metadata={"description": "row-major values, flat or nested by shape"}
    )

    @pre_load
    def bound_lengths(self, data: object, **kwargs: Any) -> object:
        check_lengths(data, {"shape": MAX_DIMS, "parameters": MAX_PARAMETERS})
        return data


class RequestedOutputSchema(Schema):
    """One output the client asks for."""

    name = fields.String(required=True, metadata={"example": OUTPUT_NAME})
    parameters = fields.Dict(
        keys=fields.String(),
        load_default=dict,
        metadata={"description": "binary_data: return this output as raw bytes"},
    )

    @pre_load
    def bound_lengths(self, data: object, **kwargs: Any) -> object:
        check_lengths(data, {"parameters": MAX_PARAMETERS})
        return data


class InferRequestSchema(Schema):
    """Body (or JSON header) of POST /v2/models/{name}/infer.

    Other top-level fields are ignored, as KServe's and Triton's servers do:
    the kserve client adds "model_name" and "model_version".
    """

    class Meta:
        unknown = EXCLUDE

    id = fields.String(metadata={"description": "echoed in the response"})
    parameters = fields.Dict(
        keys=fields.String(),
        load_default=dict,
        metadata={"description": "binary_data_output: every output as raw bytes"},
    )
    inputs = fields.List(
        fields.Nested(InferInputSchema), required=True, validate=validate.Length(1)
    )
    outputs = fields.List(fields.Nested(RequestedOutputSchema))

    @pre_load
    def bound_lengths(self, data: object, **kwargs: Any) -> object:
        check_lengths(
            data,
            {
                "inputs": MAX_TENSORS,
                "outputs": MAX_TENSORS,
                "parameters": MAX_PARAMETERS,
            },
        )
        return data


class InferOutputSchema(Schema):
    """One output tensor of an infer response."""

    name = fields.String(required=True, metadata={"example": OUTPUT_NAME})
    datatype = fields.String(required=True, metadata={"example": "FP32"})
    shape = fields.List(fields.Integer(), required=True)
    parameters = fields.Dict(keys=fields.String())
    data = fields.List(fields.Float(), metadata={"description": "row-major, flat"})


class InferResponseSchema(Schema):
    """Body (or JSON header) of a successful infer response."""

    model_name = fields.String(required=True)
    model_version = fields.String(required=True)
    id = fields.String()
    outputs = fields.List(fields.Nested(InferOutputSchema), required=True)


# One instance: building a schema (and its nested ones) costs more than a load.
INFER_REQUEST_SCHEMA = InferRequestSchema()


@dataclass(frozen=True)
class InferRequest:
    """What an infer request asks for, checked."""

    id: str | None
    pixels: np.ndarray  # (n, 64) float32 raw pixels
    binary_output: bool  # answer with the binary tensor extension


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """Split a body into its JSON header and the tensor bytes after it."""
    if header_length is None:
        return body, b""
    if not header_length.isdigit() or int(header_length) > len(body):
        raise InvalidInput(
            f"{HEADER_LENGTH} must be a byte count within the {len(body)}-byte "
            f"body, got {header_length[:40]!r}"
        )
    return body[: int(header_length)], body[int(header_length) :]


def parse_request(header: bytes) -> dict[str, Any]:
    """Parse and shape-check the JSON part of an infer request."""
    document = parse_json_body(header)
    try:
        return INFER_REQUEST_SCHEMA.load(document)
    except ValidationError as error:
        details = error.messages if isinstance(error.messages, dict) else {}
        raise InvalidInput("infer request is malformed", details) from None


def features_input(inputs: list[dict[str, Any]]) -> dict[str, Any]:
    """The one input the model takes; any other name is an error."""
    names = [tensor["name"] for tensor in inputs]
    if names != [INPUT_NAME]:
        raise InvalidInput(
            f"the model takes exactly one input, {INPUT_NAME!r}; got {names[:5]}"
        )
    return inputs[0]


def checked_shape(tensor: dict[str, Any], max_rows: int, model_type: str) -> int:
    """Check the declared datatype and shape; return the row count."""
    expected_type = datatype(model_type)
    if tensor["datatype"] != expected_type:
        raise InvalidInput(
            f"input {INPUT_NAME!r} must be {expected_type}, "
            f"got {tensor['datatype'][:20]!r}"
        )
    shape = tensor["shape"]
    if len(shape) != 2 or shape[1] != INPUT_SIZE or not 1 <= shape[0] <= max_rows:
        raise InvalidInput(
            f"input {INPUT_NAME!r} must have shape [n, {INPUT_SIZE}] with "
            f"1 <= n <= {max_rows}, got {shape[:5]}"
        )
    return shape[0]


def value_errors(errors: dict[int, str]) -> dict[str, list[str]]:
    """Key flat-index errors by [row, column], as the client laid them out."""
    return {
        f"[{index // INPUT_SIZE}, {index % INPUT_SIZE}]": [message]
        for index, message in errors.items()
    }


def json_pixels(data: object, rows: int) -> np.ndarray:
    """Pixels from JSON `data`: flat row-major values, or nested as [n][64]."""
    if type(data) is not list:
        raise InvalidInput(
            f"input {INPUT_NAME!r} data must be an array, got {json_type_name(data)}"
        )
    nested = len(data) == rows and all(type(row) is list for row in data)
    if nested:
        pixels, errors = to_pixel_matrix(data)
        if errors:
            raise InvalidInput(f"input {INPUT_NAME!r} data is invalid", errors)
        return pixels
    if len(data) != rows * INPUT_SIZE:
        raise InvalidInput(
            f"input {INPUT_NAME!r} shape [{rows}, {INPUT_SIZE}] needs "
            f"{rows * INPUT_SIZE} values (flat) or {rows} rows of {INPUT_SIZE}, "
            f"got {len(data)} elements"
        )
    pixels, errors = to_pixel_array(data)
    if errors:
        raise InvalidInput(
            f"input {INPUT_NAME!r} data is invalid", value_errors(errors)
        )
    return pixels.reshape(rows, INPUT_SIZE)


def binary_pixels(size: object, tail: bytes, rows: int, wire: str) -> np.ndarray:
    """Pixels from the bytes after the JSON header (binary tensor extension)."""
    expected = rows * INPUT_SIZE * WIRE_DTYPES[wire].itemsize
    if type(size) is not int or size != expected:
        raise InvalidInput(
            f"input {INPUT_NAME!r} binary_data_size must be {expected} for shape "
            f"[{rows}, {INPUT_SIZE}] {wire}, got {str(size)[:20]}"
        )
    if len(tail) != size:
        raise InvalidInput(
            f"binary inputs declare {size} bytes but {len(tail)} bytes follow "
            "the JSON header"
        )
    pixels = np.frombuffer(tail, WIRE_DTYPES[wire]).astype(np.float32, copy=False)
    errors = checked_pixel_values(pixels)
    if errors:
        raise InvalidInput(
            f"input {INPUT_NAME!r} data is invalid", value_errors(errors)
        )
    return pixels.reshape(rows, INPUT_SIZE)


def boolean_parameter(parameters: dict[str, Any], name: str, default: bool) -> bool:
    value = parameters.get(name, default)
    if type(value) is not bool:
        raise InvalidInput(f"parameter {name!r} must be a boolean")
    return value


def wants_binary_output(request: dict[str, Any]) -> bool:
    """Whether to answer in binary: per requested output, else request-wide."""
    default = boolean_parameter(request["parameters"], "binary_data_output", False)
    outputs = request.get("outputs") or []
    names = [output["name"] for output in outputs]
    if any(name != OUTPUT_NAME for name in names) or len(names) > 1:
        raise InvalidInput(
            f"the model has one output, {OUTPUT_NAME!r}; requested {names[:5]}"
        )
    if not outputs:
        return default
    parameters = outputs[0]["parameters"]
    if "classification" in parameters:
        raise InvalidInput("the classification extension is not supported")
    return boolean_parameter(parameters, "binary_data", default)


def decode_infer_request(
    body: bytes, header_length: str | None, max_rows: int, info: ModelInfo
) -> InferRequest:
    """Check an infer request completely; raise InvalidInput/InvalidJSON if bad."""
    header, tail = split_body(body, header_length)
    request = parse_request(header)
    tensor = features_input(request["inputs"])
    rows = checked_shape(tensor, max_rows, info.input_type)
    size = tensor["parameters"].get("binary_data_size")
    if size is not None and "data" in tensor:
        raise InvalidInput(
            f"input {INPUT_NAME!r} has both data and binary_data_size; send one"
        )
    if size is not None:
        pixels = binary_pixels(size, tail, rows, tensor["datatype"])
    elif "data" in tensor:
        if tail:
            raise InvalidInput(
                f"{len(tail)} bytes follow the JSON header but no input "
                "declares binary_data_size"
            )
        pixels = json_pixels(tensor["data"], rows)
    else:
        raise InvalidInput(f"input {INPUT_NAME!r} has no data")
    return InferRequest(
        id=request.get("id"),
        pixels=pixels,
        binary_output=wants_binary_output(request),
    )


def encode_infer_response(
    request: InferRequest, probabilities: np.ndarray, info: ModelInfo
) -> tuple[bytes, dict[str, str]]:
    """The response body and its headers, JSON or binary as requested."""
    wire = datatype(info.output_type)
    output: dict[str, Any] = {
        "name": info.output_name,
        "datatype": wire,
        "shape": list(probabilities.shape),
    }
    tensor_bytes = b""
    if request.binary_output:
        tensor_bytes = probabilities.astype(WIRE_DTYPES[wire], copy=False).tobytes()
        output["parameters"] = {"binary_data_size": len(tensor_bytes)}
    else:
        output["data"] = probabilities.ravel()
    document: dict[str, Any] = {
        "model_name": info.metadata[MetadataKey.MODEL_NAME],
        "model_version": info.metadata[MetadataKey.MODEL_VERSION],
    }
    if request.id is not None:
        document["id"] = request.id
    document["outputs"] = [output]
    header = orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
    if not request.binary_output:
        return header, {"Content-Type": "application/json"}
    headers = {HEADER_LENGTH: str(len(header)), "Content-Type": BINARY_MIMETYPE}
    return header + tensor_bytes, headers
