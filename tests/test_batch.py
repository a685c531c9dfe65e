import json

import numpy as np
import pytest

from serving.app import create_app
from serving.config import ServeConfig
from tests.test_app import assert_error

ZERO_ROW = [0.0] * 64


def post_batch(client, body):
    data = body if isinstance(body, str) else json.dumps(body)
    return client.post("/predict/batch", data=data, content_type="application/json")


def test_batch_predicts_every_row_in_order(client, predictor, digits):
    features, labels = digits
    rows = features[:100]
    response = post_batch(client, {"instances": rows.tolist()})
    assert response.status_code == 200
    predictions = response.get_json()["predictions"]
    expected = predictor.predict(rows)
    assert [p["prediction"] for p in predictions] == expected.labels.tolist()
    assert [p["confidence"] for p in predictions] == pytest.approx(
        expected.confidences.tolist()
    )
    assert np.mean([p["prediction"] for p in predictions] == labels[:100]) >= 0.95


def test_batch_rows_match_single_predictions(client, digits):
    rows = digits[0][200:205].tolist()
    batch = post_batch(client, {"instances": rows}).get_json()["predictions"]
    singles = [
        client.post("/predict", json={"features": row}).get_json() for row in rows
    ]
    assert batch == singles


def test_batch_accepts_the_configured_maximum(serve_config, predictor):
    config = ServeConfig(model_path=serve_config.model_path, max_batch_rows=5)
    client = create_app(config, predictor=predictor).test_client()
    assert post_batch(client, {"instances": [ZERO_ROW] * 5}).status_code == 200
    response = post_batch(client, {"instances": [ZERO_ROW] * 6})
    assert response.status_code == 422
    assert "between 1 and 5 rows, got 6" in json.dumps(response.get_json())


def rows_with(row, column, value, rows=3):
    instances = [list(ZERO_ROW) for _ in range(rows)]
    instances[row][column] = value
    return {"instances": instances}


BAD_BATCHES = [
    ("no rows", {"instances": []}, {"instances": ["must have between 1 and"]}),
    (
        "not a list",
        {"instances": {"a": 1}},
        {"instances": ["must be an array of rows"]},
    ),
    ("row not a list", {"instances": [ZERO_ROW, 5]}, {"1": ["must be an array of 64"]}),
    ("short row", {"instances": [ZERO_ROW, [0] * 63]}, {"1": ["exactly 64 values"]}),
    ("string pixel", rows_with(2, 7, "3"), {"2": {"7": ["got string"]}}),
    ("boolean pixel", rows_with(1, 0, False), {"1": {"0": ["got boolean"]}}),
    ("null pixel", rows_with(0, 63, None), {"0": {"63": ["got null"]}}),
    ("too bright", rows_with(1, 10, 16.5), {"1": {"10": ["between 0 and 16"]}}),
    ("negative", rows_with(2, 3, -1), {"2": {"3": ["between 0 and 16"]}}),
    ("missing field", {"rows": [ZERO_ROW]}, {"instances": ["Missing data"]}),
]


@pytest.mark.parametrize(
    ("body", "expected"),
    [case[1:] for case in BAD_BATCHES],
    ids=[case[0] for case in BAD_BATCHES],
)
def test_bad_batches_name_the_row_and_column(client, body, expected):
    error = assert_error(post_batch(client, body), 422, "invalid_request")
    details = error["details"]
    if "instances" not in expected:
        details = details["instances"]
    for key, value in expected.items():
        if isinstance(value, dict):
            ((column, (fragment,)),) = value.items()
            assert list(details[key]) == [column]
            assert fragment in details[key][column][0]
        else:
            assert value[0] in details[key][0]


def test_batch_errors_are_capped_and_ordered(client):
    instances = [[20.0] * 64 for _ in range(3)]
    details = post_batch(client, {"instances": instances}).get_json()["error"][
        "details"
    ]
    assert list(details["instances"]) == ["0"]
    assert list(details["instances"]["0"]) == [str(i) for i in range(10)]


def test_batch_json_that_is_not_rfc_8259_is_a_400(client):
    response = post_batch(client, '{"instances": [[NaN]]}')
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_json"
