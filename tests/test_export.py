import dataclasses
import hashlib
import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from onnx import numpy_helper

from contract import (
    CLASSES,
    INPUT_NAME,
    INPUT_SIZE,
    NUM_CLASSES,
    OUTPUT_NAME,
    PIXEL_MAX,
    MetadataKey,
)
from tests.conftest import REPO_ROOT
from training.export import run_export
from training.onnx_export import PARITY_TOLERANCE, check_parity
from training.train import TrainResult, load_checkpoint


def run_onnx(path, features: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], {INPUT_NAME: features})[0]


def trained(train_config) -> TrainResult:
    result = load_checkpoint(train_config, train_config.output_path / "checkpoint.pt")
    assert result is not None
    return result


def metadata_of(onnx_path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(onnx_path).metadata_props}


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
    metadata = metadata_of(onnx_path)
    assert set(MetadataKey.REQUIRED) <= set(metadata)
    assert int(metadata[MetadataKey.INPUT_SIZE]) == INPUT_SIZE
    assert float(metadata[MetadataKey.PIXEL_MAX]) == PIXEL_MAX
    assert json.loads(metadata[MetadataKey.CLASSES]) == list(CLASSES)
    assert metadata[MetadataKey.NORMALIZATION] == "x / 16"
    recorded = json.loads(metadata[MetadataKey.TRAIN_CONFIG])
    assert recorded == train_config.to_dict()
    assert float(metadata[MetadataKey.TEST_ACCURACY]) >= 0.97


def test_metadata_carries_the_temperature_and_calibration_figures(
    onnx_path, train_config
):
    metadata = metadata_of(onnx_path)
    card = json.loads((onnx_path.parent / "model.json").read_text())
    temperature = float(metadata[MetadataKey.TEMPERATURE])
    assert temperature == trained(train_config).temperature == card["temperature"]
    # Label smoothing leaves the raw softmax underconfident: the fit sharpens it.
    assert 0.2 < temperature < 0.8
    served = card["test_scores"]
    for key, name in [
        (MetadataKey.TEST_ACCURACY, "accuracy"),
        (MetadataKey.TEST_NLL, "nll"),
        (MetadataKey.TEST_BRIER, "brier"),
        (MetadataKey.TEST_ECE, "ece"),
        (MetadataKey.TEST_CONFIDENT_ERROR_SHARE, "confident_error_share"),
    ]:
        assert float(metadata[key]) == pytest.approx(served[name], abs=1e-6)
    unscaled = card["test_scores_before_scaling"]
    assert served["nll"] < unscaled["nll"] and served["ece"] < unscaled["ece"]
    assert served["accuracy"] == unscaled["accuracy"]


def test_graph_divides_the_logits_by_the_temperature_before_softmax(onnx_path):
    model = onnx.load(onnx_path)
    operators = [node.op_type for node in model.graph.node]
    assert operators[-2:] == ["Div", "Softmax"]
    divide = model.graph.node[-2]
    constants = {
        output: numpy_helper.to_array(node.attribute[0].t)
        for node in model.graph.node
        if node.op_type == "Constant"
        for output in node.output
    }
    divisor = constants[divide.input[1]]
    temperature = float(metadata_of(onnx_path)[MetadataKey.TEMPERATURE])
    assert divisor.dtype == np.float32 and float(divisor) == temperature


def test_onnx_matches_torch_on_all_digits(onnx_path, train_config, digits):
    features, labels = digits
    onnx_probabilities = run_onnx(onnx_path, features)
    result = trained(train_config)
    with torch.no_grad():
        logits = result.model(torch.from_numpy(features))
    torch_probabilities = torch.softmax(logits / result.temperature, dim=1).numpy()
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
    assert card["parity"]["temperature"] == card["temperature"]
    written = {p.name for p in onnx_path.parent.iterdir()}
    assert "history.json" in written
    assert not {"loss.png", "accuracy.png"} & written  # plots are their own step


def test_exports_with_the_same_config_are_byte_identical(
    onnx_path, train_config, tmp_path
):
    fresh = run_export(dataclasses.replace(train_config, output_dir=str(tmp_path)))
    assert fresh.read_bytes() == onnx_path.read_bytes()


def test_parity_check_fails_loudly_when_graph_and_weights_disagree(
    onnx_path, train_config, digits
):
    result = trained(train_config)
    bytes_ = onnx_path.read_bytes()
    assert check_parity(result.model, bytes_, digits[0], result.temperature) <= 1e-5
    with pytest.raises(RuntimeError, match="parity failed"):
        # The right weights at another temperature: the graph's own must be used.
        check_parity(result.model, bytes_, digits[0], result.temperature * 1.1)
    with torch.no_grad():
        result.model.layers[-1].bias[3] += 0.1  # shifts only class 3
    with pytest.raises(RuntimeError, match="parity failed"):
        check_parity(result.model, bytes_, digits[0], result.temperature)


def test_export_keeps_matplotlib_off_its_import_path():
    code = "import sys, training.export; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)


def test_an_unwritable_output_directory_is_one_line_not_a_traceback(
    monkeypatch, capsys
):
    """As the Compose train service saw it: a root-owned ./artifacts mount."""
    from training import export

    def refuse(config):
        raise PermissionError(13, "Permission denied", "/app/artifacts/model.onnx")

    monkeypatch.setattr(export, "run_export", refuse)
    assert export.main() == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("export failed: cannot write /app/artifacts/model.onnx")
    assert "HOST_UID=$(id -u)" in line
