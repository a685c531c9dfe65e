import numpy as np
from sklearn.datasets import load_digits

from contract import INPUT_SIZE, NUM_CLASSES, PIXEL_MAX, PIXEL_MIN
from training.data import load_digit_arrays, load_splits, make_train_loader


def test_digits_are_row_major_flattened_raw_pixels():
    features, labels = load_digit_arrays()
    images = load_digits().images
    assert features.shape == (1797, INPUT_SIZE)
    assert features.dtype == np.float32 and labels.dtype == np.int64
    np.testing.assert_array_equal(features[5].reshape(8, 8), images[5])
    assert features.min() == PIXEL_MIN and features.max() == PIXEL_MAX


def test_split_is_80_20_stratified_and_seeded():
    splits = load_splits(seed=3, test_fraction=0.2)
    assert len(splits.x_train) == 1437 and len(splits.x_test) == 360
    train_share = np.bincount(splits.y_train, minlength=NUM_CLASSES) / 1437
    test_share = np.bincount(splits.y_test, minlength=NUM_CLASSES) / 360
    np.testing.assert_allclose(train_share, test_share, atol=0.01)
    again = load_splits(seed=3, test_fraction=0.2)
    np.testing.assert_array_equal(splits.x_test, again.x_test)
    other = load_splits(seed=4, test_fraction=0.2)
    assert not np.array_equal(splits.x_test, other.x_test)


def test_train_loader_covers_every_row_once_per_epoch_in_seeded_order():
    features, labels = load_digit_arrays()
    first = [batch[1] for batch in make_train_loader(features, labels, 64, seed=1)]
    second = [batch[1] for batch in make_train_loader(features, labels, 64, seed=1)]
    assert [len(b) for b in first][:-1] == [64] * (len(first) - 1)
    assert sum(len(b) for b in first) == len(labels)
    assert all((a == b).all() for a, b in zip(first, second, strict=True))
