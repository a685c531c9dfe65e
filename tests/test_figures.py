import io
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.image import AxesImage

from contract import NUM_CLASSES, PIXEL_MAX
from tests.conftest import REPO_ROOT
from training.figures import (
    DIGIT_INCHES,
    FIGURE_DPI,
    TITLE_LINE_INCHES,
    class_balance_chart,
    class_mean_grid,
    class_means,
    confusion_matrix_plot,
    digit_grid,
    history_curves,
    misclassified_grid,
    misclassified_indices,
    pixel_histogram,
    reliability_diagrams,
)
from training.history import EpochRecord


def images_of(figure) -> list[AxesImage]:
    return [image for axes in figure.axes for image in axes.get_images()]


def titles_of(figure) -> list[str]:
    return [axes.get_title() for axes in figure.axes if axes.get_images()]


def render_png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def one_hot_probabilities(predicted: list[int], confidence: list[float]):
    """Rows whose argmax is `predicted`, with that class at `confidence`."""
    rows = np.full((len(predicted), NUM_CLASSES), 0.0)
    for row, (label, top) in enumerate(zip(predicted, confidence, strict=True)):
        rows[row] = (1 - top) / (NUM_CLASSES - 1)
        rows[row, label] = top
    return rows


def test_digit_grid_draws_each_digit_on_one_fixed_scale(digits):
    features, labels = digits
    figure = digit_grid(features[:12], [str(label) for label in labels[:12]])
    images = images_of(figure)
    assert len(images) == 12
    assert titles_of(figure) == [str(label) for label in labels[:12]]
    np.testing.assert_array_equal(images[3].get_array(), features[3].reshape(8, 8))
    # The same pixel value must look the same in every cell, faint digit or not.
    assert {image.get_clim() for image in images} == {(0.0, PIXEL_MAX)}
    rows = {axes.get_subplotspec().rowspan.start for axes in figure.axes}
    assert rows == {0, 1}  # 12 digits in rows of 10


def test_digit_grid_rejects_a_title_count_that_does_not_match(digits):
    features, _ = digits
    with pytest.raises(ValueError, match="3 images but 2 titles"):
        digit_grid(features[:3], ["a", "b"])
    with pytest.raises(ValueError, match="at least one"):
        digit_grid(features[:0], [])


def test_class_means_average_each_class_separately():
    features = np.array([[0, 2], [4, 6], [8, 8]], dtype=np.float32)
    labels = np.array([1, 1, 3])
    means = class_means(features, labels)
    assert means.shape == (NUM_CLASSES, 2)
    np.testing.assert_array_equal(means[1], [2, 4])
    np.testing.assert_array_equal(means[3], [8, 8])
    assert np.isnan(means[0]).all()


def test_class_mean_grid_titles_carry_the_sample_counts(digits):
    figure = class_mean_grid(*digits)
    assert len(images_of(figure)) == NUM_CLASSES
    assert titles_of(figure)[0] == "0 (n=178)"


def test_pixel_histogram_has_one_bar_per_value_summing_to_all_pixels():
    features = np.array([[0, 0, 0, 16], [0, 3, 3, 16]], dtype=np.float32)
    (axes,) = pixel_histogram(features).axes
    heights = [bar.get_height() for bar in axes.patches]
    assert len(heights) == 17
    assert heights[0] == pytest.approx(4 / 8)
    assert heights[3] == pytest.approx(2 / 8) and heights[16] == pytest.approx(2 / 8)
    assert sum(heights) == pytest.approx(1.0)


def test_class_balance_chart_shows_the_count_of_every_class():
    labels = np.array([0, 0, 2, 9, 9, 9])
    (axes,) = class_balance_chart(labels).axes
    heights = [bar.get_height() for bar in axes.patches]
    assert heights == [2, 0, 1, 0, 0, 0, 0, 0, 0, 3]


def test_confusion_matrix_plot_writes_every_count_in_its_cell():
    matrix = np.arange(NUM_CLASSES * NUM_CLASSES).reshape(NUM_CLASSES, NUM_CLASSES)
    axes = confusion_matrix_plot(matrix).axes[0]
    cells = {(text.get_position(), text.get_text()) for text in axes.texts}
    assert len(cells) == NUM_CLASSES * NUM_CLASSES
    assert ((2, 7), str(matrix[7, 2])) in cells  # x = predicted, y = true
    np.testing.assert_array_equal(axes.get_images()[0].get_array(), matrix)


def test_reliability_diagrams_show_accuracy_per_bin_before_and_after():
    # Two digits at 95% (one right), two at 45% (both right), in both panels.
    probabilities = one_hot_probabilities([0, 1, 2, 3], [0.95, 0.95, 0.45, 0.45])
    labels = np.array([0, 9, 2, 3])
    figure = reliability_diagrams(probabilities, probabilities, labels, 0.5)
    assert len(figure.axes) == 2
    for axes in figure.axes:
        bars = [bar for bar in axes.patches if bar.get_height() > 0]
        # Bar heights are the accuracy of the bins at 0.45 and 0.95.
        assert sorted(bar.get_height() for bar in bars) == [0.5, 1.0]
        assert {text.get_text() for text in axes.texts} == {"2"}  # counts
    # ECE: each bin of two is off by |accuracy - confidence|: 0.45 and 0.55.
    assert figure.axes[0].get_title().endswith("ECE 0.5000")
    assert "T = 0.500" in figure.axes[1].get_title()


def test_misclassified_indices_lists_wrong_rows_most_confident_first():
    probabilities = one_hot_probabilities([1, 2, 3, 4, 5], [0.6, 0.9, 0.8, 0.9, 0.7])
    labels = np.array([1, 0, 0, 0, 5])  # rows 1, 2 and 3 are wrong
    assert misclassified_indices(probabilities, labels).tolist() == [1, 3, 2]


def test_misclassified_grid_titles_give_true_predicted_and_confidence(digits):
    features, _ = digits
    probabilities = one_hot_probabilities([7, 3, 2], [0.55, 0.9, 0.8])
    labels = np.array([1, 3, 4])
    figure = misclassified_grid(features[:3], labels, probabilities)
    assert titles_of(figure) == ["true 4\npred 2, 80%", "true 1\npred 7, 55%"]
    np.testing.assert_array_equal(
        images_of(figure)[0].get_array(), features[2].reshape(8, 8)
    )
    limited = misclassified_grid(features[:3], labels, probabilities, limit=1)
    assert len(images_of(limited)) == 1


def test_misclassified_grid_says_so_when_nothing_is_wrong(digits):
    features, _ = digits
    probabilities = one_hot_probabilities([0, 1], [0.9, 0.9])
    figure = misclassified_grid(features[:2], np.array([0, 1]), probabilities)
    assert not images_of(figure)
    assert [text.get_text() for text in figure.texts] == ["no misclassified digits"]


def test_history_curves_plot_train_and_test_for_loss_and_accuracy():
    history = [
        EpochRecord(epoch, 1 / epoch, 1.5 / epoch, 1 - 0.1 / epoch, 0.9)
        for epoch in range(1, 4)
    ]
    loss_axes, accuracy_axes = history_curves(history).axes
    train_loss, test_loss = loss_axes.get_lines()
    assert list(train_loss.get_xdata()) == [1, 2, 3]
    assert list(test_loss.get_ydata()) == [1.5, 0.75, 0.5]
    assert list(accuracy_axes.get_lines()[1].get_ydata()) == [0.9, 0.9, 0.9]
    assert accuracy_axes.get_ylabel() == "accuracy"


def test_figures_render_to_small_pngs_without_a_display(digits):
    features, labels = digits
    png = render_png(digit_grid(features[:20], [str(label) for label in labels[:20]]))
    assert png.startswith(b"\x89PNG")
    width, height = (int.from_bytes(png[i : i + 4], "big") for i in (16, 20))
    # 10 columns and 2 rows of digits, each row with a one-line title.
    assert width == 10 * DIGIT_INCHES * FIGURE_DPI
    assert abs(height - 2 * (DIGIT_INCHES + TITLE_LINE_INCHES) * FIGURE_DPI) <= 1
    assert len(png) < 40_000


def test_importing_the_plot_modules_leaves_the_matplotlib_backend_alone():
    # Jupyter selects its inline backend; a module that forced Agg on import would
    # make every later pyplot figure in the notebook silently disappear.
    code = (
        "import matplotlib, training.figures, training.plots; "
        "print(matplotlib.rcParams['backend'])"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env={"MPLBACKEND": "svg", "PATH": ""},
        capture_output=True,
        text=True,
        check=True,
    )
    assert completed.stdout.strip() == "svg"
