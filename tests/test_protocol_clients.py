"""The official clients of KServe and Triton against a real `python -m serving`.

tritonclient (HTTP) speaks the Open Inference Protocol with the binary tensor
extension by default; the kserve SDK's REST client speaks V2 and KServe V1.
Both must work unchanged, and agree with the service's own /predict/batch.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.http as triton
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from tritonclient.utils import InferenceServerException

from contract import INPUT_NAME, OUTPUT_NAME, MetadataKey
from tests.conftest import request, serving_process


@pytest.fixture(scope="module")
def server(onnx_path, tmp_path_factory) -> Iterator[int]:
    log_path = tmp_path_factory.mktemp("protocol-clients") / "server.log"
    with serving_process(onnx_path, log_path, workers=2) as (_, port):
        yield port


@pytest.fixture(scope="module")
def model(predictor) -> dict[str, str]:
    metadata = predictor.info.metadata
    return {
        "name": metadata[MetadataKey.MODEL_NAME],
        "version": metadata[MetadataKey.MODEL_VERSION],
    }


@pytest.fixture()
def triton_client(server) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(url=f"127.0.0.1:{server}")
    yield client
    client.close()


def batch_predictions(port: int, rows: np.ndarray) -> list[dict]:
    """The service's own answer for `rows`, from POST /predict/batch."""
    status, body = request(
        f"http://127.0.0.1:{port}/predict/batch",
        json.dumps({"instances": rows.tolist()}).encode(),
    )
    assert status == 200
    return body["predictions"]


def assert_same_as_batch(port: int, rows: np.ndarray, probabilities: np.ndarray):
    """Identical digits and confidences (both float32) to /predict/batch."""
    assert probabilities.dtype == np.float32
    assert probabilities.shape == (len(rows), 10)
    expected = batch_predictions(port, rows)
    assert probabilities.argmax(axis=1).tolist() == [p["prediction"] for p in expected]
    np.testing.assert_array_equal(
        probabilities.max(axis=1),
        np.asarray([p["confidence"] for p in expected], np.float32),
    )


def test_triton_health_and_metadata(triton_client, model):
    assert triton_client.is_server_live()
    assert triton_client.is_server_ready()
    assert triton_client.is_model_ready(model["name"])
    assert triton_client.is_model_ready(model["name"], model["version"])
    assert not triton_client.is_model_ready("other")
    assert "binary_tensor_data" in triton_client.get_server_metadata()["extensions"]
    metadata = triton_client.get_model_metadata(model["name"])
    assert metadata["versions"] == [model["version"]]
    assert metadata["inputs"] == [
        {"name": INPUT_NAME, "datatype": "FP32", "shape": [-1, 64]}
    ]
    assert metadata["outputs"] == [
        {"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1, 10]}
    ]


@pytest.mark.parametrize("rows", [1, 200])
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_triton_infer_matches_predict_batch(
    triton_client, server, model, digits, rows, binary
):
    pixels = digits[0][:rows]
    tensor = triton.InferInput(INPUT_NAME, list(pixels.shape), "FP32")
    tensor.set_data_from_numpy(pixels, binary_data=binary)
    output = triton.InferRequestedOutput(OUTPUT_NAME, binary_data=binary)
    result = triton_client.infer(
        model["name"], [tensor], outputs=[output], request_id=f"rows-{rows}"
    )
    response = result.get_response()
    assert response["id"] == f"rows-{rows}"
    assert response["model_version"] == model["version"]
    assert ("data" in response["outputs"][0]) is not binary
    assert_same_as_batch(server, pixels, result.as_numpy(OUTPUT_NAME))


def test_triton_default_request_gets_binary_outputs(
    triton_client, server, model, digits
):
    """Without requested outputs tritonclient asks for all of them in binary."""
    pixels = digits[0][300:310]
    tensor = triton.InferInput(INPUT_NAME, list(pixels.shape), "FP32")
    tensor.set_data_from_numpy(pixels)
    result = triton_client.infer(
        model["name"], [tensor], model_version=model["version"]
    )
    assert "data" not in result.get_response()["outputs"][0]
    assert_same_as_batch(server, pixels, result.as_numpy(OUTPUT_NAME))


def test_triton_sees_protocol_errors_as_exceptions(triton_client, model):
    bad = np.full((1, 64), 17, np.float32)
    tensor = triton.InferInput(INPUT_NAME, [1, 64], "FP32")
    tensor.set_data_from_numpy(bad)
    with pytest.raises(InferenceServerException) as raised:
        triton_client.infer(model["name"], [tensor])
    assert raised.value.status() == "400"
    assert "between 0 and 16" in raised.value.message()

    wrong_type = triton.InferInput(INPUT_NAME, [1, 64], "FP64")
    wrong_type.set_data_from_numpy(np.zeros((1, 64), np.float64))
    with pytest.raises(InferenceServerException) as raised:
        triton_client.infer(model["name"], [wrong_type])
    assert raised.value.status() == "400"
    assert "must be FP32" in raised.value.message()

    with pytest.raises(InferenceServerException) as raised:
        triton_client.get_model_metadata("other")
    assert raised.value.status() == "404"


async def kserve_v2_session(port: int, model: dict[str, str], pixels: np.ndarray):
    base = f"http://127.0.0.1:{port}"
    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0))
    try:
        health = (
            await client.is_server_live(base),
            await client.is_server_ready(base),
            await client.is_model_ready(base, model["name"]),
            await client.is_model_ready(base, "other"),
        )
        answers = {}
        for binary in (True, False):
            tensor = InferInput(INPUT_NAME, list(pixels.shape), "FP32")
            tensor.set_data_from_numpy(pixels, binary_data=binary)
            infer_request = InferRequest(
                model_name=model["name"], infer_inputs=[tensor], request_id="k-1"
            )
            answers[binary] = await client.infer(
                base, infer_request, model_name=model["name"]
            )
        return health, answers
    finally:
        await client.close()


def test_kserve_v2_client(server, model, digits):
    pixels = digits[0][:200]
    health, answers = asyncio.run(kserve_v2_session(server, model, pixels))
    assert health == (True, True, True, False)
    for answer in answers.values():
        assert answer.model_name == model["name"]
        assert answer.id == "k-1"
        (output,) = answer.outputs
        assert output.name == OUTPUT_NAME
        assert_same_as_batch(server, pixels, output.as_numpy())


async def kserve_v1_session(port: int, model: dict[str, str], rows: list) -> tuple:
    base = f"http://127.0.0.1:{port}"
    client = InferenceRESTClient(RESTConfig(protocol="v1", retries=0))
    try:
        live = await client.is_server_live(base)
        ready = await client.is_model_ready(base, model["name"])
        answer = await client.infer(base, {"instances": rows}, model_name=model["name"])
        return live, ready, answer
    finally:
        await client.close()


def test_kserve_v1_client(server, model, digits):
    pixels = digits[0][:50]
    live, ready, answer = asyncio.run(kserve_v1_session(server, model, pixels.tolist()))
    assert live is True
    assert ready is True
    expected = [p["prediction"] for p in batch_predictions(server, pixels)]
    assert answer == {"predictions": expected}


def test_the_protocol_routes_are_counted_in_metrics(triton_client, server, model):
    triton_client.is_model_ready(model["name"])
    with pytest.raises(InferenceServerException):
        triton_client.get_model_metadata("other")
    url = f"http://127.0.0.1:{server}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    assert 'endpoint="/v2/models/<name>/ready",method="GET",status="200"' in text
    assert 'endpoint="/v2/models/<name>",method="GET",status="404"' in text
