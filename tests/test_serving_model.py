from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from contract import INPUT_NAME, NUM_CLASSES, OUTPUT_NAME, MetadataKey
from serving.model import ModelLoadError, Predictor


def write_model(path, input_width=64, metadata=None, input_name=INPUT_NAME):
    """Save a one-MatMul model with the given input width and metadata."""
    weights = numpy_helper.from_array(
        np.zeros((input_width, NUM_CLASSES), np.float32), "weights"
    )
    graph = helper.make_graph(
        [helper.make_node("MatMul", [input_name, "weights"], [OUTPUT_NAME])],
        "stand_in",
        [
            helper.make_tensor_value_info(
                input_name, TensorProto.FLOAT, ["batch", input_width]
            )
        ],
        [
            helper.make_tensor_value_info(
                OUTPUT_NAME, TensorProto.FLOAT, ["batch", NUM_CLASSES]
            )
        ],
        initializer=[weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, path)
    return path


def exported_metadata(onnx_path):
    return {p.key: p.value for p in onnx.load(onnx_path).metadata_props}


def test_loads_the_exported_model_and_reads_its_metadata(predictor, onnx_path):
    info = predictor.info
    assert info.input_name == INPUT_NAME and info.input_shape[1] == 64
    assert info.output_shape[1] == NUM_CLASSES
    assert info.metadata == exported_metadata(onnx_path)
    assert len(info.sha256) == 64


def test_predictions_are_labels_with_their_probability(predictor, digits):
    features, labels = digits
    results = predictor.predict(features[:50]).as_dicts()
    probabilities = predictor.probabilities(features[:50])
    assert [r["prediction"] for r in results] == probabilities.argmax(1).tolist()
    for result, row in zip(results, probabilities, strict=True):
        assert result["confidence"] == pytest.approx(float(row.max()))
    assert np.mean([r["prediction"] for r in results] == labels[:50]) > 0.95


def test_one_image_gets_the_same_answer_as_a_one_row_batch(predictor, digits):
    features, _ = digits
    for row in features[:200]:
        assert predictor.predict_one(row) == predictor.predict(row[None]).as_dicts()[0]


class TiedPredictor(Predictor):
    """Answers two equal top probabilities, at classes 3 and 7."""

    def probabilities(self, features):
        tied = np.full((len(features), NUM_CLASSES), 0.05, np.float32)
        tied[:, [3, 7]] = 0.3
        return tied


def test_a_tie_answers_the_first_class_for_one_image_and_for_a_batch(predictor):
    tied = TiedPredictor(predictor.session, predictor.info)
    pixels = np.zeros((1, 64), np.float32)
    assert tied.predict_one(pixels[0]) == tied.predict(pixels).as_dicts()[0]
    assert tied.predict_one(pixels[0])["prediction"] == 3


def test_missing_file_says_how_to_create_it(tmp_path):
    with pytest.raises(ModelLoadError, match="python -m training.export"):
        Predictor.load(tmp_path / "absent.onnx")


def test_corrupt_file_is_refused(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x00not an onnx model")
    with pytest.raises(ModelLoadError, match="cannot load"):
        Predictor.load(path)


def test_wrong_input_width_is_refused(tmp_path, onnx_path):
    path = write_model(tmp_path / "m.onnx", 32, exported_metadata(onnx_path))
    with pytest.raises(ModelLoadError, match=r"shape \[batch, 64\]"):
        Predictor.load(path)


def test_wrong_tensor_name_is_refused(tmp_path, onnx_path):
    metadata = exported_metadata(onnx_path)
    path = write_model(tmp_path / "m.onnx", metadata=metadata, input_name="pixels")
    with pytest.raises(ModelLoadError, match="'features'"):
        Predictor.load(path)


def test_missing_metadata_is_refused(tmp_path):
    with pytest.raises(ModelLoadError, match="metadata lacks"):
        Predictor.load(write_model(tmp_path / "m.onnx"))


def test_metadata_that_contradicts_the_contract_is_refused(tmp_path, onnx_path):
    metadata = exported_metadata(onnx_path) | {MetadataKey.PIXEL_MAX: "255.0"}
    with pytest.raises(ModelLoadError, match="pixel_max=255.0"):
        Predictor.load(write_model(tmp_path / "m.onnx", metadata=metadata))


def test_onnxruntime_threads_follow_the_config(onnx_path):
    from serving.app import create_app
    from serving.config import ServeConfig
    from serving.routes import STATE_KEY

    config = ServeConfig(model_path=str(onnx_path), ort_threads=2)
    session = create_app(config).extensions[STATE_KEY].predictor.session
    assert session.get_session_options().intra_op_num_threads == 2
    default = Predictor.load(onnx_path).session.get_session_options()
    assert default.intra_op_num_threads == 1


def test_describe_lists_accuracy_calibration_figures_and_temperature(predictor):
    metadata = predictor.info.metadata
    metrics = predictor.info.describe()["metrics"]
    assert set(metrics) == set(MetadataKey.METRICS)
    assert {"temperature", "test_nll", "test_ece", "test_brier"} <= set(metrics)
    for key, value in metrics.items():
        assert value == float(metadata[key])
    assert 0.0 < metrics["temperature"] < 1.0  # the exported model sharpens
    assert metrics["test_nll"] < 0.2 and 0.0 <= metrics["test_ece"] < 0.05


def test_describe_skips_figures_an_older_model_lacks(tmp_path, onnx_path):
    metadata = exported_metadata(onnx_path)
    del metadata[MetadataKey.TEMPERATURE], metadata[MetadataKey.TEST_ECE]
    model = Predictor.load(write_model(tmp_path / "m.onnx", metadata=metadata))
    metrics = model.info.describe()["metrics"]
    assert "temperature" not in metrics and "test_ece" not in metrics
    assert metrics["test_accuracy"] == float(metadata[MetadataKey.TEST_ACCURACY])


def test_a_directory_is_refused_as_not_a_file(tmp_path):
    with pytest.raises(ModelLoadError, match="model path is not a file"):
        Predictor.load(tmp_path)


def test_an_unreadable_file_is_one_line_not_a_traceback(tmp_path, monkeypatch):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"x")

    def refuse(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(ModelLoadError) as raised:
        Predictor.load(model)
    assert str(raised.value) == f"cannot read the model file {model}: Permission denied"
