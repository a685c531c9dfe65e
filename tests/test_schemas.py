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
