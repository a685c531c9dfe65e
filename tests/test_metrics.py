from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

ZERO_ROW = [0.0] * 64


def sample(name, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_metrics_count_requests_rows_and_classes(client, digits):
    features, labels = digits
    before_requests = sample(
        "digits_http_requests_total", endpoint="/predict", method="POST", status="200"
    )
    before_rows = sample("digits_predicted_rows_total")
    before_errors = sample(
        "digits_http_requests_total", endpoint="/predict", method="POST", status="422"
    )
    before_digit = sample("digits_predictions_total", digit=str(labels[0]))
    before_latency = sample(
        "digits_http_request_duration_seconds_count", endpoint="/predict"
    )

    client.post("/predict", json={"features": features[0].tolist()})
    client.post("/predict/batch", json={"instances": features[1:11].tolist()})
    client.post("/predict", json={"features": [1]})

    assert (
        sample(
            "digits_http_requests_total",
            endpoint="/predict",
            method="POST",
            status="200",
        )
        == before_requests + 1
    )
    assert (
        sample(
            "digits_http_requests_total",
            endpoint="/predict",
            method="POST",
            status="422",
        )
        == before_errors + 1
    )
    assert sample("digits_predicted_rows_total") == before_rows + 11
    assert sample("digits_predictions_total", digit=str(labels[0])) >= before_digit + 1
    assert (
        sample("digits_http_request_duration_seconds_count", endpoint="/predict")
        == before_latency + 2
    )


def test_unknown_paths_share_one_label(client):
    before = sample(
        "digits_http_requests_total", endpoint="unmatched", method="GET", status="404"
    )
    client.get("/a")
    client.get("/b/c")
    assert (
        sample(
            "digits_http_requests_total",
            endpoint="unmatched",
            method="GET",
            status="404",
        )
        == before + 2
    )


def test_metrics_endpoint_serves_prometheus_text(client, predictor):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    families = {
        family.name: family
        for family in text_string_to_metric_families(response.get_data(as_text=True))
    }
    assert {
        "digits_http_requests",
        "digits_http_request_duration_seconds",
        "digits_predicted_rows",
        "digits_predictions",
        "digits_model_info",
    } <= set(families)
    (info,) = [
        s
        for s in families["digits_model_info"].samples
        if s.labels["sha256"] == predictor.info.sha256
    ]
    assert info.value == 1.0


def test_unknown_methods_share_one_label(client):
    before = sample(
        "digits_http_requests_total", endpoint="unmatched", method="other", status="405"
    )
    client.open("/predict", method="BREW")
    client.open("/predict", method="PROPFIND")
    assert (
        sample(
            "digits_http_requests_total",
            endpoint="unmatched",
            method="other",
            status="405",
        )
        == before + 2
    )
