import dataclasses
import hashlib
import json

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from contract import (
    CLASSES,
    INPUT_NAME,
    INPUT_SIZE,
    NUM_CLASSES,
    OUTPUT_NAME,
    PIXEL_MAX,
    MetadataKey,
)
from training.export import run_export
from training.onnx_export import PARITY_TOLERANCE, check_parity
from training.train import load_checkpoint


def run_onnx(path, features: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], {INPUT_NAME: features})[0]


def trained_model(train_config):
    result = load_checkpoint(train_config, train_config.output_path / "checkpoint.pt")
    assert result is not None
    return result.model


def test_export_writes_one_checked_self_contained_file(onnx_path):
    assert sorted(p.name for p in onnx_path.parent.glob("model.onnx*")) == [
        "model.onnx"
    ]
    model = onnx.load(onnx_path)
    onnx.checker.check_model(model, full_check=True)
    (graph_input,) = model.graph.input
    (graph_output,) = model.graph.output
    assert graph_input.name == INPUT_NAME and graph_output.name == OUTPUT_NAME
    for tensor, width in ((graph_input, INPUT_SIZE), (graph_output, NUM_CLASSES)):
        assert tensor.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        batch, size = tensor.type.tensor_type.shape.dim
        assert batch.dim_param and size.dim_value == width


def test_metadata_carries_contract_and_provenance(onnx_path, train_config):
    metadata = {p.key: p.value for p in onnx.load(onnx_path).metadata_props}
    assert set(MetadataKey.REQUIRED) <= set(metadata)
    assert int(metadata[MetadataKey.INPUT_SIZE]) == INPUT_SIZE
    assert float(metadata[MetadataKey.PIXEL_MAX]) == PIXEL_MAX
    assert json.loads(metadata[MetadataKey.CLASSES]) == list(CLASSES)
    assert metadata[MetadataKey.NORMALIZATION] == "x / 16"
    recorded = json.loads(metadata[MetadataKey.TRAIN_CONFIG])
    assert recorded == train_config.to_dict()
    assert float(metadata[MetadataKey.TEST_ACCURACY]) >= 0.97


def test_onnx_matches_torch_on_all_digits(onnx_path, train_config, digits):
    features, labels = digits
    onnx_probabilities = run_onnx(onnx_path, features)
    with torch.no_grad():
        logits = trained_model(train_config)(torch.from_numpy(features))
    torch_probabilities = torch.softmax(logits, dim=1).numpy()
    assert np.abs(onnx_probabilities - torch_probabilities).max() <= PARITY_TOLERANCE
    np.testing.assert_array_equal(
        onnx_probabilities.argmax(1), torch_probabilities.argmax(1)
    )
    assert (onnx_probabilities.argmax(1) == labels).mean() > 0.98


def test_graph_takes_raw_pixels_and_any_batch_size(onnx_path, digits):
    features, labels = digits
    for batch in (1, 3, 256):
        probabilities = run_onnx(onnx_path, features[:batch])
        assert probabilities.shape == (batch, NUM_CLASSES)
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    raw_accuracy = (run_onnx(onnx_path, features).argmax(1) == labels).mean()
    # Pre-normalised input would be scaled twice: the graph must divide itself.
    scaled_accuracy = (
        run_onnx(onnx_path, features / PIXEL_MAX).argmax(1) == labels
    ).mean()
    assert raw_accuracy > 0.98 and scaled_accuracy < raw_accuracy - 0.2


def test_model_card_records_checksum_and_metrics(onnx_path):
    card = json.loads((onnx_path.parent / "model.json").read_text())
    assert card["sha256"] == hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    assert card["parity"]["max_abs_difference"] <= PARITY_TOLERANCE
    assert card["test_accuracy"] >= 0.97
    assert {"loss.png", "accuracy.png", "history.json"} <= {
        p.name for p in onnx_path.parent.iterdir()
    }


def test_exports_with_the_same_config_are_byte_identical(
    onnx_path, train_config, tmp_path
):
    fresh = run_export(dataclasses.replace(train_config, output_dir=str(tmp_path)))
    assert fresh.read_bytes() == onnx_path.read_bytes()


def test_parity_check_fails_loudly_when_graph_and_weights_disagree(
    onnx_path, train_config, digits
):
    model = trained_model(train_config)
    with torch.no_grad():
        model.layers[-1].bias[3] += 0.1  # shifts only class 3: not softmax-invariant
    with pytest.raises(RuntimeError, match="parity failed"):
        check_parity(model, onnx_path.read_bytes(), digits[0])
