import dataclasses
import gzip
import io
import json

import numpy as np
import pytest

from serving.app import create_app
from serving.model import Predictor

VALID = [0.0] * 64


def post_predict(client, body, content_type="application/json"):
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post("/predict", data=data, content_type=content_type)


def assert_error(response, status, code):
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


def test_predict_answers_the_seed_contract(client, digits):
    features, labels = digits
    correct = 0
    for row, label in zip(features[:40], labels[:40], strict=True):
        response = post_predict(client, {"features": row.tolist()})
        assert response.status_code == 200
        body = response.get_json()
        assert set(body) == {"prediction", "confidence"}
        assert isinstance(body["prediction"], int) and 0 <= body["prediction"] <= 9
        assert 0.0 <= body["confidence"] <= 1.0
        correct += body["prediction"] == label
    assert correct >= 38


def test_confidence_is_the_probability_of_the_predicted_class(
    client, predictor, digits
):
    row = digits[0][17]
    body = post_predict(client, {"features": row.tolist()}).get_json()
    probabilities = predictor.probabilities(row.reshape(1, -1))[0]
    assert body["prediction"] == int(np.argmax(probabilities))
    assert body["confidence"] == pytest.approx(float(probabilities.max()))


def test_integers_and_boundary_values_are_accepted(client):
    response = post_predict(client, {"features": [0] * 32 + [16] * 31 + [7.5]})
    assert response.status_code == 200


def with_value(index, value):
    features = list(VALID)
    features[index] = value
    return {"features": features}


BAD_BODIES = [
    ("63 values", {"features": [0] * 63}, "must have exactly 64 values, got 63"),
    ("65 values", {"features": [0] * 65}, "must have exactly 64 values, got 65"),
    ("empty list", {"features": []}, "must have exactly 64 values, got 0"),
    ("above range", with_value(5, 17), "must be between 0 and 16, got 17"),
    ("below range", with_value(0, -0.5), "must be between 0 and 16, got -0.5"),
    ("numeric string", with_value(9, "5"), "must be a number, got string"),
    ("boolean", with_value(3, True), "must be a number, got boolean"),
    ("null", with_value(63, None), "must be a number, got null"),
    ("nested list", with_value(1, [1, 2]), "must be a number, got array"),
    ("features not a list", {"features": "0,0,0"}, "must be an array of 64 numbers"),
    ("features null", {"features": None}, "Field may not be null."),
    ("missing field", {}, "Missing data for required field."),
]


@pytest.mark.parametrize(
    ("body", "message"),
    [case[1:] for case in BAD_BODIES],
    ids=[case[0] for case in BAD_BODIES],
)
def test_bad_bodies_get_422_naming_the_value(client, body, message):
    error = assert_error(post_predict(client, body), 422, "invalid_request")
    assert message in json.dumps(error["details"])
    if isinstance(body.get("features"), list) and len(body["features"]) == 64:
        bad_index = next(
            i for i, v in enumerate(body["features"]) if v != 0.0 or type(v) is bool
        )
        assert list(error["details"]["features"]) == [str(bad_index)]


def test_unknown_field_is_rejected(client):
    error = assert_error(
        post_predict(client, {"features": VALID, "extra": 1}), 422, "invalid_request"
    )
    assert "extra" in error["details"]


def test_several_bad_values_are_all_named(client):
    features = [20.0] * 64
    error = assert_error(
        post_predict(client, {"features": features}), 422, "invalid_request"
    )
    assert len(error["details"]["features"]) == 10  # capped, in index order
    assert list(error["details"]["features"])[:3] == ["0", "1", "2"]


@pytest.mark.parametrize(
    "raw",
    [
        '{"features": [NaN' + ", 0" * 63 + "]}",
        '{"features": [Infinity' + ", 0" * 63 + "]}",
        '{"features": [-Infinity' + ", 0" * 63 + "]}",
        '{"features": [1e400' + ", 0" * 63 + "]}",
        '{"features": [' + "9" * 400 + ", 0" * 63 + "]}",
        '{"features": [0, 0',
        "",
        "not json",
    ],
    ids=[
        "NaN",
        "Infinity",
        "-Infinity",
        "1e400",
        "huge integer",
        "truncated",
        "empty",
        "text",
    ],
)
def test_non_rfc_json_is_a_400(client, raw):
    error = assert_error(post_predict(client, raw), 400, "invalid_json")
    assert "not valid JSON" in error["message"]


@pytest.mark.parametrize("body", ["[1, 2]", '"features"', "42", "null"])
def test_body_that_is_not_an_object_is_a_422(client, body):
    assert_error(post_predict(client, body), 422, "invalid_request")


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", ""]
)
def test_wrong_content_type_is_a_415(client, content_type):
    response = post_predict(client, {"features": VALID}, content_type=content_type)
    assert_error(response, 415, "unsupported_media_type")


@pytest.mark.parametrize("coding", ["gzip", "br", "deflate", "x-custom"])
def test_a_compressed_body_is_a_415_not_misread(client, coding):
    body = json.dumps({"features": VALID}).encode()
    sent = gzip.compress(body) if coding == "gzip" else body  # br: readable JSON
    for path in ("/predict", "/v2/models/digits-mlp/infer"):
        response = client.post(
            path,
            data=sent,
            headers={"Content-Type": "application/json", "Content-Encoding": coding},
        )
        assert response.status_code == 415, (path, coding)
        assert response.headers["X-Error-Code"] == "unsupported_media_type"
        assert "send the body uncompressed" in response.get_data(as_text=True)


def test_identity_content_encoding_is_the_body_as_sent(client):
    response = client.post(
        "/predict",
        json={"features": VALID},
        headers={"Content-Encoding": "identity"},
    )
    assert response.status_code == 200


def test_unknown_route_is_a_json_404(client):
    assert_error(client.get("/nope"), 404, "not_found")


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "OPTIONS", "BREW"])
def test_wrong_method_is_a_json_405_with_allow_header(client, method):
    response = client.open("/predict", method=method)
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


class ExplodingPredictor(Predictor):
    def probabilities(self, features):
        raise RuntimeError("secret internal detail")


def exploding(predictor) -> ExplodingPredictor:
    return ExplodingPredictor(predictor.session, predictor.info)


def test_unexpected_errors_are_a_json_500_without_internals(serve_config, predictor):
    app = create_app(serve_config, predictor=exploding(predictor), warm=False)
    response = post_predict(app.test_client(), {"features": VALID})
    error = assert_error(response, 500, "internal_error")
    assert "secret" not in response.get_data(as_text=True)
    assert error["message"] == "internal server error"


def test_service_keeps_serving_after_bad_requests(client):
    statuses = [
        post_predict(client, body).status_code
        for body in ({"features": [1]}, "garbage", {"features": VALID})
    ]
    assert statuses == [422, 400, 200]
    assert post_predict(client, {"features": VALID}).status_code == 200


def post_chunked(client, body: bytes):
    """Post `body` with no Content-Length, as a chunked upload arrives."""
    return client.post(
        "/predict",
        input_stream=io.BytesIO(body),
        content_type="application/json",
        environ_overrides={"wsgi.input_terminated": True},
    )


def test_chunked_body_within_the_limit_is_served(client):
    response = post_chunked(client, json.dumps({"features": VALID}).encode())
    assert response.status_code == 200


def test_chunked_body_over_the_limit_is_a_413(serve_config, predictor):
    config = dataclasses.replace(serve_config, max_content_length=4096)
    client = create_app(config, predictor=predictor).test_client()
    padded = json.dumps({"features": VALID}).encode() + b" " * 5000
    error = assert_error(post_chunked(client, padded), 413, "payload_too_large")
    assert error["details"] == {"limit_bytes": 4096}


def test_declared_length_over_the_limit_is_a_413(serve_config, predictor):
    config = dataclasses.replace(serve_config, max_content_length=4096)
    client = create_app(config, predictor=predictor).test_client()
    body = json.dumps({"features": VALID}).encode() + b" " * 5000
    error = assert_error(post_predict(client, body), 413, "payload_too_large")
    assert str(len(body)) in error["message"]


@pytest.fixture()
def app_with_new_route(serve_config, predictor):
    """The app plus a route written the usual Flask way, as a contributor would."""
    from flask import jsonify, request

    config = dataclasses.replace(serve_config, max_content_length=4096)
    app = create_app(config, predictor=predictor)

    @app.post("/echo-length")
    def echo_length():
        return jsonify({"items": len(request.get_json())})

    return app.test_client()


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"[NaN]", "application/json", 400, "invalid_json"),
        (b"[1e400]", "application/json", 400, "invalid_json"),
        (b"{", "application/json", 400, "invalid_json"),
        (b"[]", "text/plain", 415, "unsupported_media_type"),
        (b"[" + b"0," * 4000 + b"0]", "application/json", 413, "payload_too_large"),
    ],
)
def test_a_new_route_using_get_json_gets_the_same_error_codes(
    app_with_new_route, body, content_type, status, code
):
    response = app_with_new_route.post(
        "/echo-length", data=body, content_type=content_type
    )
    error = assert_error(response, status, code)
    if status == 413:
        assert error["details"] == {"limit_bytes": 4096}


def test_a_new_route_using_get_json_reads_a_valid_body(app_with_new_route):
    response = app_with_new_route.post("/echo-length", json=[1, 2, 3])
    assert response.status_code == 200 and response.get_json() == {"items": 3}


def test_chunked_body_without_length_is_read_within_the_limit(client):
    """No Content-Length (chunked upload): read to the end, still size-limited."""
    body = json.dumps({"features": VALID}).encode()
    response = client.post(
        "/predict",
        input_stream=io.BytesIO(body),
        content_type="application/json",
        headers={"Transfer-Encoding": "chunked"},
    )
    assert response.status_code == 200
    padded = io.BytesIO(body + b" " * (3 * 1024 * 1024))
    response = client.post(
        "/predict",
        input_stream=padded,
        content_type="application/json",
        headers={"Transfer-Encoding": "chunked"},
    )
    assert_error(response, 413, "payload_too_large")


@pytest.mark.parametrize("concurrency", [1, 2])
def test_at_most_app_concurrency_requests_run_app_code_at_once(
    serve_config, predictor, concurrency
):
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    config = dataclasses.replace(serve_config, app_concurrency=concurrency)
    app = create_app(config, predictor=predictor)
    running, most = [0], [0]
    lock = threading.Lock()

    @app.get("/slow")
    def slow():
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return {"done": True}

    def call(_):
        return app.test_client().get("/slow").status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(call, range(6)))
    assert statuses == [200] * 6
    assert most[0] == concurrency


def test_unknown_keys_are_reported_boundedly(client):
    body = {"features": VALID, **{f"extra{i}": 0 for i in range(500)}}
    response = post_predict(client, body)
    error = assert_error(response, 422, "invalid_request")
    assert len(error["details"]) == 11  # ten named, then how many more
    assert error["details"]["_more"] == ["490 more not shown"]
    assert len(response.data) < 4096


def test_a_huge_key_name_is_not_echoed_back(client):
    response = post_predict(client, {"features": VALID, "k" * 100_000: 0})
    error = assert_error(response, 422, "invalid_request")
    (key,) = error["details"]
    assert len(key) == 64 and key.endswith("...")
    assert len(response.data) < 1024


@pytest.mark.parametrize(
    "body",
    [
        "[" * 1200 + "]" * 1200,  # deep
        '{"instances": [' + ",".join(["[]"] * 1100) + "]}",  # many arrays
        "{" + ",".join(f'"k{i}": 0' for i in range(1100)) + "}",  # many keys
    ],
    ids=["nested", "arrays", "keys"],
)
def test_json_with_more_containers_or_keys_than_any_valid_request_is_400(client, body):
    for path in ("/predict", "/predict/batch"):
        response = (
            post_predict(client, body)
            if path == "/predict"
            else client.post(path, data=body, content_type="application/json")
        )
        error = assert_error(response, 400, "json_too_complex")
        assert "at most 1088" in error["message"]
    v2 = client.post("/v2/models/digits-mlp/infer", data=body)
    assert v2.status_code == 400
    assert v2.headers["X-Error-Code"] == "json_too_complex"


def test_the_largest_valid_batch_is_not_too_complex(client):
    rows = [[16.0] * 64] * 1024
    response = client.post("/predict/batch", json={"instances": rows})
    assert response.status_code == 200
    v2 = {
        "inputs": [
            {"name": "features", "shape": [1024, 64], "datatype": "FP32", "data": rows}
        ]
    }
    assert client.post("/v2/models/digits-mlp/infer", json=v2).status_code == 200


@pytest.mark.parametrize(
    "probe", ["/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"]
)
def test_health_probes_skip_the_queue_of_predictions(serve_config, predictor, probe):
    """A probe answers while the one app slot is busy; a prediction waits."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    app = create_app(dataclasses.replace(serve_config, app_concurrency=1), predictor)
    inside, release = threading.Event(), threading.Event()

    @app.post("/busy")
    def busy():
        inside.set()
        release.wait(timeout=10)
        return {"done": True}

    with ThreadPoolExecutor(max_workers=3) as pool:
        holder = pool.submit(lambda: app.test_client().post("/busy").status_code)
        assert inside.wait(timeout=5)
        started = time.monotonic()
        assert app.test_client().get(probe).status_code == 200
        probe_seconds = time.monotonic() - started
        queued = pool.submit(
            lambda: post_predict(app.test_client(), {"features": VALID})
        )
        time.sleep(0.2)
        assert not queued.done()  # predictions still wait their turn
        release.set()
        assert holder.result(timeout=10) == 200
        assert queued.result(timeout=10).status_code == 200
    assert probe_seconds < 1.0
