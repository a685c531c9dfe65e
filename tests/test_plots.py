from matplotlib.image import imread

from training.history import EpochRecord, load_history, save_history
from training.plots import PLOT_DPI, main, plot_history


def test_plot_history_writes_loss_and_accuracy_pngs(tmp_path):
    history = [EpochRecord(epoch, 1 / epoch, 2 / epoch, 0.9, 0.8) for epoch in (1, 2)]
    paths = plot_history(history, tmp_path)
    assert [path.name for path in paths] == ["loss.png", "accuracy.png"]
    for path in paths:
        height, width, _ = imread(path).shape
        assert (width, height) == (6 * PLOT_DPI, 4 * PLOT_DPI)
    assert paths[0].read_bytes() != paths[1].read_bytes()


def test_command_plots_the_history_export_wrote(tmp_path, monkeypatch, capsys):
    history = [EpochRecord(epoch, 1 / epoch, 2 / epoch, 0.9, 0.8) for epoch in (1, 2)]
    save_history(history, tmp_path / "history.json")
    assert load_history(tmp_path / "history.json") == history
    monkeypatch.setenv("TRAIN_OUTPUT_DIR", str(tmp_path))
    assert main() == 0
    assert (tmp_path / "loss.png").is_file() and (tmp_path / "accuracy.png").is_file()
    assert "wrote" in capsys.readouterr().out


def test_command_without_history_says_to_export_first(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TRAIN_OUTPUT_DIR", str(tmp_path))
    assert main() == 1
    assert "python -m training.export" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
