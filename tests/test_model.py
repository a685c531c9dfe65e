import numpy as np
import pytest
import torch

from contract import INPUT_SIZE, NUM_CLASSES, PIXEL_MAX
from training.model import (
    DigitsClassifier,
    build_model,
    predict_logits,
    predict_probabilities,
)


def test_mlp_maps_batches_of_64_pixels_to_10_logits():
    model = build_model(seed=0)
    linear_shapes = [
        tuple(layer.weight.shape)
        for layer in model.layers
        if isinstance(layer, torch.nn.Linear)
    ]
    assert linear_shapes == [(128, 64), (64, 128), (NUM_CLASSES, 64)]
    assert model(torch.zeros(7, INPUT_SIZE)).shape == (7, NUM_CLASSES)


def test_normalization_is_the_first_step_of_the_model():
    model = build_model(seed=0).eval()
    raw = torch.rand(5, INPUT_SIZE) * PIXEL_MAX
    without_scaling = model.layers[1:]
    torch.testing.assert_close(model(raw), without_scaling(raw / PIXEL_MAX))


def test_classifier_outputs_probabilities():
    classifier = DigitsClassifier(build_model(seed=0)).eval()
    probabilities = classifier(torch.rand(4, INPUT_SIZE) * PIXEL_MAX)
    assert (probabilities >= 0).all()
    torch.testing.assert_close(probabilities.sum(dim=1), torch.ones(4))


def test_initialisation_depends_only_on_the_seed():
    same = [build_model(seed=7).state_dict() for _ in range(2)]
    other = build_model(seed=8).state_dict()
    for name, tensor in same[0].items():
        assert torch.equal(tensor, same[1][name])
    assert not torch.equal(same[0]["layers.1.weight"], other["layers.1.weight"])


def test_predict_probabilities_matches_the_classifier_on_numpy_pixels():
    mlp = build_model(seed=0)
    pixels = (np.random.default_rng(0).random((6, INPUT_SIZE)) * PIXEL_MAX).astype(
        np.float32
    )
    probabilities = predict_probabilities(mlp, pixels)
    assert probabilities.shape == (6, NUM_CLASSES)
    assert probabilities.dtype == np.float32
    with torch.no_grad():
        expected = DigitsClassifier(mlp).eval()(torch.from_numpy(pixels)).numpy()
    np.testing.assert_array_equal(probabilities, expected)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)


def test_classifier_divides_the_logits_by_its_temperature():
    mlp = build_model(seed=0).eval()
    raw = torch.rand(4, INPUT_SIZE) * PIXEL_MAX
    with torch.no_grad():
        sharp = DigitsClassifier(mlp, temperature=0.5)(raw)
        expected = torch.softmax(mlp(raw) * 2, dim=-1)
    torch.testing.assert_close(sharp, expected)
    pixels = raw.numpy()
    np.testing.assert_array_equal(
        predict_probabilities(mlp, pixels, 0.5), sharp.numpy()
    )
    np.testing.assert_array_equal(predict_logits(mlp, pixels), mlp(raw).detach())


@pytest.mark.parametrize("temperature", [0.0, -1.0])
def test_a_temperature_must_be_positive(temperature):
    with pytest.raises(ValueError, match="temperature"):
        DigitsClassifier(build_model(seed=0), temperature)
