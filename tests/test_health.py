from contract import CLASSES, INPUT_NAME, OUTPUT_NAME
from serving.app import create_app, warm_up
from tests.test_app import exploding


def test_liveness_is_always_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_readiness_flips_only_after_warm_up(serve_config, predictor):
    app = create_app(serve_config, predictor=predictor, warm=False)
    client = app.test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "not_ready"
    assert client.get("/healthz").status_code == 200
    warm_up(app)
    response = client.get("/readyz")
    assert response.status_code == 200 and response.get_json() == {"status": "ready"}


def test_failed_warm_up_keeps_the_worker_unready(serve_config, predictor):
    client = create_app(serve_config, predictor=exploding(predictor)).test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "warm-up failed" in response.get_json()["error"]["message"]
    assert client.get("/healthz").status_code == 200


def test_model_endpoint_reads_the_onnx_file(client, predictor):
    body = client.get("/model").get_json()
    metadata = predictor.info.metadata
    assert body["name"] == metadata["model_name"] == "digits-mlp"
    assert body["version"] == metadata["model_version"]
    assert body["sha256"] == predictor.info.sha256
    assert body["opset"] == int(metadata["onnx_opset"])
    assert body["input"] == {
        "name": INPUT_NAME,
        "dtype": "float32",
        "shape": ["batch", 64],
    }
    assert body["output"]["name"] == OUTPUT_NAME
    assert body["output"]["shape"] == ["batch", 10]
    assert body["pixel_range"] == [0.0, 16.0]
    assert body["classes"] == list(CLASSES)
    assert body["normalization"] == "x / 16"
    assert body["metrics"]["test_accuracy"] >= 0.97
    assert body["train_config"]["epochs"] == 25
    assert body["metadata"] == metadata
