"""The schemas on their own: Python values json would let through reach them too."""

import math

import numpy as np
import pytest
from marshmallow import ValidationError

from serving.validation import PredictRequestSchema


def load(features):
    return PredictRequestSchema().load({"features": features})


def test_valid_features_load_as_float32_array():
    pixels = load(list(range(16)) * 4)["features"]
    assert pixels.dtype == np.float32 and pixels.shape == (64,)
    assert pixels[15] == 15.0


@pytest.mark.parametrize(
    "bad",
    [math.nan, math.inf, -math.inf, 10**400],
    ids=["nan", "inf", "-inf", "10**400"],
)
def test_non_finite_and_huge_values_are_refused_by_index(bad):
    features = [0.0] * 64
    features[40] = bad
    with pytest.raises(ValidationError) as caught:
        load(features)
    assert list(caught.value.messages["features"]) == ["40"]
    assert "must be between 0 and 16" in caught.value.messages["features"]["40"][0]


@pytest.mark.parametrize(
    "row",
    [[0] * 64, [16] * 64, [0.5] * 32 + [15] * 32, list(range(16)) * 4],
)
def test_fast_path_returns_what_the_schema_returns(row):
    from serving.validation import load_features

    schema = PredictRequestSchema()
    fast = load_features(schema, {"features": row})
    assert fast.dtype == np.float32 and fast.shape == (64,)
    np.testing.assert_array_equal(fast, schema.load({"features": row})["features"])


@pytest.mark.parametrize(
    "body",
    [
        {"features": [0] * 64, "extra": 1},
        {"features": [0] * 63},
        {"features": [0] * 63 + [17]},
        {"features": [0] * 63 + [True]},
        {"features": [0] * 63 + [float("nan")]},
        {"pixels": [0] * 64},
        [[0] * 64],
        None,
    ],
)
def test_fast_path_leaves_every_bad_body_to_the_schema(body):
    from serving.validation import load_features

    schema = PredictRequestSchema()
    with pytest.raises(ValidationError) as fast:
        load_features(schema, body)
    with pytest.raises(ValidationError) as direct:
        schema.load(body)
    assert fast.value.messages == direct.value.messages
