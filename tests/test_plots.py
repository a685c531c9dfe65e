from matplotlib.image import imread

from training.plots import PLOT_DPI, plot_history
from training.train import EpochRecord


def test_plot_history_writes_loss_and_accuracy_pngs(tmp_path):
    history = [EpochRecord(epoch, 1 / epoch, 2 / epoch, 0.9, 0.8) for epoch in (1, 2)]
    paths = plot_history(history, tmp_path)
    assert [path.name for path in paths] == ["loss.png", "accuracy.png"]
    for path in paths:
        height, width, _ = imread(path).shape
        assert (width, height) == (6 * PLOT_DPI, 4 * PLOT_DPI)
    assert paths[0].read_bytes() != paths[1].read_bytes()
