"""The Open Inference Protocol (V2) and KServe V1 routes, in process.

The official clients drive the real server in tests/test_protocol_clients.py;
here every rule of the wire format and every refusal is checked directly.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib

import numpy as np
import pytest

from contract import INPUT_NAME, OUTPUT_NAME, MetadataKey
from serving.app import create_app
from serving.oip import HEADER_LENGTH, InferResponseSchema
from serving.schemas import (
    LiveSchema,
    ModelListSchema,
    ModelMetadataSchema,
    ProtocolErrorSchema,
    ReadySchema,
    ServerMetadataSchema,
    V1PredictResponseSchema,
)
from tests.conftest import REPO_ROOT


@pytest.fixture()
def served(predictor) -> dict[str, str]:
    metadata = predictor.info.metadata
    return {
        "name": metadata[MetadataKey.MODEL_NAME],
        "version": metadata[MetadataKey.MODEL_VERSION],
    }


def infer_url(served, version: str | None = None) -> str:
    if version is None:
        return f"/v2/models/{served['name']}/infer"
    return f"/v2/models/{served['name']}/versions/{version}/infer"


def features_input(rows: np.ndarray, **overrides) -> dict:
    return {
        "name": INPUT_NAME,
        "shape": list(rows.shape),
        "datatype": "FP32",
        "data": rows.ravel().tolist(),
        **overrides,
    }


def binary_body(header: dict, tensor: bytes) -> tuple[bytes, dict[str, str]]:
    encoded = json.dumps(header).encode()
    return encoded + tensor, {HEADER_LENGTH: str(len(encoded))}


def split_response(response) -> tuple[dict, bytes]:
    """Split a (possibly binary) infer response into its JSON and its tensor bytes."""
    length = int(response.headers.get(HEADER_LENGTH, len(response.data)))
    return json.loads(response.data[:length]), response.data[length:]


def assert_protocol_error(response, status: int, code: str, *phrases: str) -> str:
    """The protocols' error shape: {"error": "<message>"}, the code in a header."""
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"}
    assert isinstance(body["error"], str)
    assert response.headers["X-Error-Code"] == code
    for phrase in phrases:
        assert phrase in body["error"]
    return body["error"]


def test_json_infer_returns_the_probabilities_of_every_row(
    client, served, predictor, digits
):
    rows = digits[0][:5]
    response = client.post(
        infer_url(served), json={"id": "req-7", "inputs": [features_input(rows)]}
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["model_name"] == served["name"]
    assert body["model_version"] == served["version"]
    assert body["id"] == "req-7"
    (output,) = body["outputs"]
    assert output["name"] == OUTPUT_NAME
    assert output["datatype"] == "FP32"
    assert output["shape"] == [5, 10]
    served_probabilities = np.asarray(output["data"], np.float32).reshape(5, 10)
    np.testing.assert_array_equal(served_probabilities, predictor.probabilities(rows))


def test_nested_and_flat_json_data_give_the_same_answer(client, served, digits):
    rows = digits[0][:3]
    flat = client.post(infer_url(served), json={"inputs": [features_input(rows)]})
    nested = client.post(
        infer_url(served),
        json={"inputs": [features_input(rows, data=rows.tolist())]},
    )
    assert flat.status_code == nested.status_code == 200
    assert flat.get_json() == nested.get_json()
    assert "id" not in flat.get_json()  # no id sent, none echoed


def test_binary_tensors_both_ways_match_json(client, served, digits):
    rows = digits[0][10:74]
    header = {
        "inputs": [
            {
                "name": INPUT_NAME,
                "shape": [64, 64],
                "datatype": "FP32",
                "parameters": {"binary_data_size": rows.nbytes},
            }
        ],
        "parameters": {"binary_data_output": True},
    }
    body, headers = binary_body(header, rows.astype("<f4").tobytes())
    response = client.post(
        infer_url(served),
        data=body,
        headers=headers,
        content_type="application/octet-stream",
    )
    assert response.status_code == 200
    assert response.mimetype == "application/octet-stream"
    document, tensor = split_response(response)
    (output,) = document["outputs"]
    assert output["parameters"] == {"binary_data_size": 64 * 10 * 4}
    assert "data" not in output
    binary = np.frombuffer(tensor, "<f4").reshape(64, 10)

    as_json = client.post(infer_url(served), json={"inputs": [features_input(rows)]})
    expected = np.asarray(as_json.get_json()["outputs"][0]["data"], np.float32)
    np.testing.assert_array_equal(binary, expected.reshape(64, 10))


def test_binary_input_without_content_type_is_read(client, served, digits):
    """tritonclient sends no Content-Type at all."""
    rows = digits[0][:1]
    header = {"inputs": [features_input(rows, parameters={"binary_data_size": 256})]}
    del header["inputs"][0]["data"]
    body, headers = binary_body(header, rows.astype("<f4").tobytes())
    response = client.post(infer_url(served), data=body, headers=headers)
    assert response.status_code == 200
    assert "data" in response.get_json()["outputs"][0]  # JSON output by default


@pytest.mark.parametrize(
    ("outputs", "parameters", "binary"),
    [
        ([{"name": OUTPUT_NAME, "parameters": {"binary_data": True}}], {}, True),
        ([{"name": OUTPUT_NAME, "parameters": {"binary_data": False}}], {}, False),
        # The request-wide default applies where the output does not say.
        ([{"name": OUTPUT_NAME}], {"binary_data_output": True}, True),
        (
            [{"name": OUTPUT_NAME, "parameters": {"binary_data": False}}],
            {"binary_data_output": True},
            False,
        ),
        ([], {}, False),
    ],
)
def test_output_selection_chooses_the_encoding(
    client, served, digits, outputs, parameters, binary
):
    body = {
        "inputs": [features_input(digits[0][:2])],
        "outputs": outputs,
        "parameters": parameters,
    }
    response = client.post(infer_url(served), json=body)
    assert response.status_code == 200
    assert (HEADER_LENGTH in response.headers) is binary
    document, tensor = split_response(response)
    assert len(tensor) == (2 * 10 * 4 if binary else 0)
    assert ("data" in document["outputs"][0]) is not binary


def test_the_versioned_route_serves_the_loaded_version_only(client, served, digits):
    body = {"inputs": [features_input(digits[0][:1])]}
    response = client.post(infer_url(served, served["version"]), json=body)
    assert response.status_code == 200
    assert_protocol_error(
        client.post(infer_url(served, "0.0"), json=body),
        404,
        "model_not_found",
        "no version '0.0'",
    )


def test_metadata_comes_from_the_loaded_model(client, served, predictor):
    metadata = client.get(f"/v2/models/{served['name']}").get_json()
    assert metadata == {
        "name": served["name"],
        "versions": [served["version"]],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": INPUT_NAME, "datatype": "FP32", "shape": [-1, 64]}],
        "outputs": [{"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1, 10]}],
    }
    versioned = client.get(f"/v2/models/{served['name']}/versions/{served['version']}")
    assert versioned.get_json() == metadata


def test_server_metadata_names_the_project_and_its_version(client):
    body = client.get("/v2").get_json()
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert body == {
        "name": pyproject["project"]["name"],
        "version": pyproject["project"]["version"],
        "extensions": ["binary_tensor_data"],
    }


def test_health_and_readiness_routes(client, served):
    assert client.get("/v2/health/live").get_json() == {"live": True}
    assert client.get("/v2/health/ready").get_json() == {"ready": True}
    ready = {"name": served["name"], "ready": True}
    assert client.get(f"/v2/models/{served['name']}/ready").get_json() == ready
    assert client.get(f"/v1/models/{served['name']}").get_json() == ready
    assert client.get("/v1/models").get_json() == {"models": [served["name"]]}
    assert client.get("/v2/models").get_json() == {"models": [served["name"]]}
    assert client.get("/").get_json() == {"status": "alive"}


def test_an_unready_model_answers_503_on_every_readiness_route(
    serve_config, predictor, served
):
    client = create_app(serve_config, predictor=predictor, warm=False).test_client()
    assert client.get("/v2/health/live").status_code == 200
    for path in (
        "/v2/health/ready",
        f"/v2/models/{served['name']}/ready",
        f"/v1/models/{served['name']}",
    ):
        assert_protocol_error(client.get(path), 503, "not_ready", "not ready")


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/other",
        "/v2/models/other/ready",
        "/v2/models/other/versions/1",
        "/v1/models/other",
    ],
)
def test_unknown_models_are_404(client, path):
    assert_protocol_error(client.get(path), 404, "model_not_found", "'other'")


def test_unknown_model_infer_and_predict_are_404(client, digits):
    body = {"inputs": [features_input(digits[0][:1])]}
    assert_protocol_error(
        client.post("/v2/models/other/infer", json=body), 404, "model_not_found"
    )
    assert_protocol_error(
        client.post("/v1/models/other:predict", json={"instances": [[0] * 64]}),
        404,
        "model_not_found",
    )


def valid_input(**overrides) -> dict:
    return {
        "name": INPUT_NAME,
        "shape": [1, 64],
        "datatype": "FP32",
        "data": [0] * 64,
        **overrides,
    }


@pytest.mark.parametrize(
    ("body", "phrase"),
    [
        ({}, "inputs"),
        ({"inputs": []}, "inputs"),
        ({"inputs": "x"}, "inputs"),
        ({"inputs": [valid_input(unknown=1)]}, "unknown"),
        ({"inputs": [valid_input(name="pixels")]}, "exactly one input"),
        ({"inputs": [valid_input(), valid_input()]}, "exactly one input"),
        ({"inputs": [valid_input(datatype="FP64")]}, "must be FP32"),
        ({"inputs": [valid_input(datatype="INT32")]}, "must be FP32"),
        ({"inputs": [valid_input(shape=[64])]}, "shape [n, 64]"),
        ({"inputs": [valid_input(shape=[1, 63])]}, "shape [n, 64]"),
        ({"inputs": [valid_input(shape=[0, 64], data=[])]}, "shape [n, 64]"),
        ({"inputs": [valid_input(shape=[1, 64, 1])]}, "shape [n, 64]"),
        ({"inputs": [valid_input(shape=[1025, 64])]}, "1 <= n <= 1024"),
        ({"inputs": [valid_input(shape=[1, "64"])]}, "shape"),
        ({"inputs": [valid_input(shape=[1.5, 64])]}, "shape"),
        ({"inputs": [valid_input(data=[0] * 63)]}, "needs 64 values"),
        ({"inputs": [valid_input(data=[0] * 128)]}, "needs 64 values"),
        ({"inputs": [valid_input(data=[[0] * 63])]}, "exactly 64 values"),
        ({"inputs": [valid_input(data=[0] * 63 + [17])]}, "between 0 and 16"),
        ({"inputs": [valid_input(data=[0] * 63 + [-1])]}, "[0, 63]"),
        ({"inputs": [valid_input(data=[0] * 63 + ["1"])]}, "must be a number"),
        ({"inputs": [valid_input(data=[0] * 63 + [True])]}, "must be a number"),
        ({"inputs": [valid_input(data=[0] * 63 + [None])]}, "must be a number"),
        ({"inputs": [valid_input(data="0")]}, "must be an array"),
        (
            {"inputs": [{"name": INPUT_NAME, "shape": [1, 64], "datatype": "FP32"}]},
            "no data",
        ),
        ({"inputs": [valid_input()], "outputs": [{"name": "logits"}]}, "one output"),
        (
            {
                "inputs": [valid_input()],
                "outputs": [{"name": OUTPUT_NAME, "parameters": {"classification": 3}}],
            },
            "classification",
        ),
        (
            {"inputs": [valid_input()], "parameters": {"binary_data_output": "yes"}},
            "must be a boolean",
        ),
        ({"inputs": [valid_input(parameters={"binary_data_size": 256})]}, "both"),
        # Long lists are refused by their length, before they are walked.
        ({"inputs": [valid_input(shape=[1] * 500_000)]}, "at most 8 items"),
        ({"inputs": [valid_input()] * 9}, "at most 8 items"),
        ({"inputs": [valid_input()], "outputs": [{"name": "x"}] * 9}, "at most 8"),
        (
            {"inputs": [valid_input(parameters={str(i): 1 for i in range(33)})]},
            "at most 32 items",
        ),
    ],
)
def test_bad_infer_requests_are_400_with_a_reason(client, served, body, phrase):
    response = client.post(infer_url(served), json=body)
    assert_protocol_error(response, 400, "invalid_input", phrase)


@pytest.mark.parametrize(
    "body",
    [
        b'{"inputs": [{"name": "features", "shape": [1, 64], "datatype": "FP32", '
        b'"data": [NaN' + b", 0" * 63 + b"]}]}",
        b'{"inputs": [' + b"0" * 10,
        b'{"data": Infinity}',
        b'{"data": 1e400}',
        b"",
    ],
)
def test_json_that_is_not_strict_json_is_400(client, served, body):
    response = client.post(infer_url(served), data=body)
    assert_protocol_error(response, 400, "invalid_json", "not valid JSON")


def binary_request(client, served, tensor: bytes, size, header_length=None, rows=1):
    header = {
        "inputs": [
            {
                "name": INPUT_NAME,
                "shape": [rows, 64],
                "datatype": "FP32",
                "parameters": {"binary_data_size": size},
            }
        ]
    }
    body, headers = binary_body(header, tensor)
    if header_length is not None:
        headers[HEADER_LENGTH] = header_length
    return client.post(infer_url(served), data=body, headers=headers)


@pytest.mark.parametrize(
    ("tensor", "size", "header_length", "phrase"),
    [
        (np.zeros(64, "<f4").tobytes()[:-4], 256, None, "252 bytes follow"),
        (np.zeros(65, "<f4").tobytes(), 256, None, "260 bytes follow"),
        (np.zeros(64, "<f4").tobytes(), 255, None, "binary_data_size must be 256"),
        (np.zeros(64, "<f4").tobytes(), "256", None, "binary_data_size must be 256"),
        (np.zeros(64, "<f4").tobytes(), 256, "99999", HEADER_LENGTH),
        (np.zeros(64, "<f4").tobytes(), 256, "-5", HEADER_LENGTH),
        (np.zeros(64, "<f4").tobytes(), 256, "ten", HEADER_LENGTH),
        (np.full(64, np.nan, "<f4").tobytes(), 256, None, "got nan"),
        (np.full(64, np.inf, "<f4").tobytes(), 256, None, "got inf"),
        (np.full(64, 16.5, "<f4").tobytes(), 256, None, "got 16.5"),
        (np.zeros(64, "<f8").tobytes(), 256, None, "512 bytes follow"),
    ],
)
def test_binary_sizes_and_values_that_do_not_add_up_are_400(
    client, served, tensor, size, header_length, phrase
):
    response = binary_request(client, served, tensor, size, header_length)
    assert_protocol_error(response, 400, "invalid_input", phrase)


def test_bytes_after_a_json_only_request_are_refused(client, served):
    header = {"inputs": [valid_input()]}
    body, headers = binary_body(header, b"\x00" * 8)
    response = client.post(infer_url(served), data=body, headers=headers)
    assert_protocol_error(response, 400, "invalid_input", "8 bytes follow")


def test_a_header_length_that_cuts_the_json_is_invalid_json(client, served):
    response = binary_request(
        client, served, np.zeros(64, "<f4").tobytes(), 256, header_length="10"
    )
    assert_protocol_error(response, 400, "invalid_json")


def test_v1_predict_returns_one_digit_per_instance(client, served, predictor, digits):
    rows = digits[0][:20]
    response = client.post(
        f"/v1/models/{served['name']}:predict", json={"instances": rows.tolist()}
    )
    assert response.status_code == 200
    assert response.get_json() == {
        "predictions": predictor.predict(rows).labels.tolist()
    }


@pytest.mark.parametrize(
    ("body", "status", "code", "phrase"),
    [
        (b'{"instances": [[0]]}', 400, "invalid_input", "exactly 64 values"),
        (b'{"instances": []}', 400, "invalid_input", "between 1 and"),
        (b'{"inputs": [[0]]}', 400, "invalid_input", "instances"),
        (b'{"instances": [[NaN]]}', 400, "invalid_json", "not valid JSON"),
        (b"[", 400, "invalid_json", "not valid JSON"),
    ],
)
def test_v1_bad_bodies_are_400(client, served, body, status, code, phrase):
    response = client.post(f"/v1/models/{served['name']}:predict", data=body)
    assert_protocol_error(response, status, code, phrase)


def test_protocol_routes_take_any_content_type_the_seed_routes_do_not(
    client, served, digits
):
    body = json.dumps({"inputs": [features_input(digits[0][:1])]})
    for content_type in (None, "application/json", "application/x-www-form-urlencoded"):
        headers = {"Content-Type": content_type} if content_type else {}
        response = client.post(infer_url(served), data=body, headers=headers)
        assert response.status_code == 200, content_type
    seed = client.post("/predict", data=json.dumps({"features": [0] * 64}))
    assert seed.status_code == 415
    assert seed.get_json()["error"]["code"] == "unsupported_media_type"


def test_http_errors_under_the_protocol_paths_take_the_protocol_shape(client, served):
    assert_protocol_error(client.get("/v2/nothing"), 404, "not_found")
    assert_protocol_error(client.get("/v1/models/x/y"), 404, "not_found")
    response = client.delete("/v2/health/live")
    assert_protocol_error(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]
    # The seed's paths keep the service's own shape.
    assert client.get("/nothing").get_json()["error"]["code"] == "not_found"


def test_oversize_protocol_bodies_are_413_in_the_protocol_shape(
    serve_config, predictor, served
):
    config = dataclasses.replace(serve_config, max_content_length=4096)
    client = create_app(config, predictor=predictor).test_client()
    response = client.post(infer_url(served), data=b" " * 5000)
    assert_protocol_error(response, 413, "payload_too_large", "limit is 4096")


def test_error_messages_stay_short_whatever_the_request_held(client, served):
    long_name = "x" * 2_000_000
    unknown_fields = {f"k{i}" * 50: 1 for i in range(500)}
    for body in (
        {"inputs": [valid_input(**unknown_fields)]},
        {"inputs": [valid_input(name=long_name)]},
        {"inputs": [valid_input(datatype=long_name)]},
    ):
        response = client.post(infer_url(served), json=body)
        message = assert_protocol_error(response, 400, "invalid_input")
        assert len(message) <= 1000


def test_fields_the_kserve_client_adds_are_ignored(client, served, digits):
    body = {
        "model_name": served["name"],
        "model_version": None,
        "inputs": [features_input(digits[0][:1])],
    }
    assert client.post(infer_url(served), json=body).status_code == 200


def test_protocol_answers_match_their_documented_schemas(client, served, digits):
    name = served["name"]
    infer = client.post(
        infer_url(served), json={"id": "1", "inputs": [features_input(digits[0][:2])]}
    )
    documented = {
        "ServerMetadata": client.get("/v2"),
        "ModelMetadata": client.get(f"/v2/models/{name}"),
        "Live": client.get("/v2/health/live"),
        "Ready": client.get(f"/v2/models/{name}/ready"),
        "ModelList": client.get("/v1/models"),
        "InferResponse": infer,
        "V1PredictResponse": client.post(
            f"/v1/models/{name}:predict", json={"instances": [[0] * 64]}
        ),
        "ProtocolError": client.get("/v2/models/other"),
    }
    schemas = {
        "ServerMetadata": ServerMetadataSchema(),
        "ModelMetadata": ModelMetadataSchema(),
        "Live": LiveSchema(),
        "Ready": ReadySchema(),
        "ModelList": ModelListSchema(),
        "InferResponse": InferResponseSchema(),
        "V1PredictResponse": V1PredictResponseSchema(),
        "ProtocolError": ProtocolErrorSchema(),
    }
    for name_, response in documented.items():
        assert schemas[name_].validate(response.get_json()) == {}, name_
