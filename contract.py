"""The facts training and serving must agree on, in plain Python.

Training builds the model from these values and writes them into the ONNX file's
``metadata_props``; serving checks the file it loads against them. This module is
the one home of the API contract, so it must stay importable without torch,
onnx or onnxruntime: both the train and the serve image ship it.
"""

from __future__ import annotations

# Request contract (the seed's API): a row-major flattened 8x8 grayscale image.
IMAGE_SHAPE = (8, 8)
INPUT_SIZE = IMAGE_SHAPE[0] * IMAGE_SHAPE[1]
PIXEL_MIN = 0.0
PIXEL_MAX = 16.0
CLASSES = tuple(range(10))
NUM_CLASSES = len(CLASSES)

# The normalization lives inside the graph, so clients send raw pixels.
NORMALIZATION = f"x / {PIXEL_MAX:g}"

# Tensor names of the exported graph: part of the contract.
INPUT_NAME = "features"
OUTPUT_NAME = "probabilities"

# Artifacts written by `python -m training.export`, relative to the repository.
ARTIFACTS_DIR = "artifacts"
MODEL_FILENAME = "model.onnx"
MODEL_CARD_FILENAME = "model.json"
MODEL_NAME = "digits-mlp"


class MetadataKey:
    """Keys of the ONNX ``metadata_props`` that export writes and serving reads."""

    MODEL_NAME = "model_name"
    MODEL_VERSION = "model_version"
    INPUT_SIZE = "input_size"
    IMAGE_SHAPE = "image_shape"
    PIXEL_MIN = "pixel_min"
    PIXEL_MAX = "pixel_max"
    CLASSES = "classes"
    NORMALIZATION = "normalization"
    TEST_ACCURACY = "test_accuracy"
    # Calibration: the softmax temperature baked into the graph, and how the
    # served probabilities score on the test split (NLL, Brier, ECE over 15
    # bins, share of mistakes served with confidence >= 0.99).
    TEMPERATURE = "temperature"
    TEST_NLL = "test_nll"
    TEST_BRIER = "test_brier"
    TEST_ECE = "test_ece"
    TEST_CONFIDENT_ERROR_SHARE = "test_confident_error_share"
    TRAIN_CONFIG = "train_config"
    OPSET = "onnx_opset"

    # The float figures GET /model lists under "metrics".
    METRICS = (
        TEST_ACCURACY,
        TEST_NLL,
        TEST_BRIER,
        TEST_ECE,
        TEST_CONFIDENT_ERROR_SHARE,
        TEMPERATURE,
    )

    REQUIRED = (
        MODEL_NAME,
        MODEL_VERSION,
        INPUT_SIZE,
        PIXEL_MIN,
        PIXEL_MAX,
        CLASSES,
        NORMALIZATION,
    )
