"""Run both notebooks top to bottom and check that their committed outputs are current.

The notebooks are executed from their own folder in a fresh kernel of this
interpreter, exactly as `make notebooks` does; any failing cell fails the test.
"""

from __future__ import annotations

import base64
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient.exceptions import CellExecutionError
from nbformat.v4 import new_code_cell, new_notebook

from notebooks.execute import (
    NOTEBOOKS,
    VOLATILE_CELL_METADATA,
    describe_changes,
    execute_notebook,
    make_kernel_manager,
    text_outputs,
)

# Committed outputs should stay light enough to read on a code host and to diff.
MAX_PNG_BYTES = 40_000
MAX_NOTEBOOK_BYTES = 300_000

by_name = pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)


@by_name
def test_notebook_runs_and_its_committed_outputs_are_current(path: Path):
    fresh = execute_notebook(path)
    committed = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    changes = describe_changes(text_outputs(committed), text_outputs(fresh))
    assert not changes, (
        f"{path.name} outputs are stale; run `make notebooks`:\n{changes}"
    )


@by_name
def test_committed_notebook_was_run_in_order_and_stays_small(path: Path):
    notebook = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    nbformat.validate(notebook)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    counts = [cell.execution_count for cell in code_cells]
    assert counts == list(range(1, len(code_cells) + 1)), "not run top to bottom"
    outputs = [output for cell in code_cells for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    pngs = [
        base64.b64decode(output.data["image/png"])
        for output in outputs
        if "image/png" in output.get("data", {})
    ]
    assert pngs, "no figures committed"
    assert max(len(png) for png in pngs) <= MAX_PNG_BYTES
    assert path.stat().st_size <= MAX_NOTEBOOK_BYTES
    for cell in notebook.cells:
        assert not set(VOLATILE_CELL_METADATA) & set(cell.metadata), cell.get("id")


def test_kernel_runs_on_this_interpreter(tmp_path: Path):
    argv = make_kernel_manager(tmp_path).kernel_spec.argv
    assert argv[0] == sys.executable


def test_a_failing_cell_fails_the_run(tmp_path: Path):
    notebook = new_notebook(
        cells=[new_code_cell("x = 1"), new_code_cell("raise ValueError('broken')")]
    )
    path = tmp_path / "broken.ipynb"
    nbformat.write(notebook, path)
    with pytest.raises(CellExecutionError, match="broken"):
        execute_notebook(path)


def test_text_outputs_ignore_how_a_stream_was_chunked():
    def cell_with(*texts: str) -> nbformat.NotebookNode:
        cell = new_code_cell("print(...)")
        cell.outputs = [
            nbformat.v4.new_output("stream", name="stdout", text=text) for text in texts
        ]
        return cell

    chunked = new_notebook(cells=[cell_with("epoch 1\n", "epoch 2\n")])
    whole = new_notebook(cells=[cell_with("epoch 1\nepoch 2\n")])
    other = new_notebook(cells=[cell_with("epoch 1\nepoch 3\n")])
    assert text_outputs(chunked) == text_outputs(whole)
    assert describe_changes(text_outputs(whole), text_outputs(chunked)) == ""
    assert "epoch 3" in describe_changes(text_outputs(whole), text_outputs(other))


def png_bytes(*chunks: tuple[bytes, bytes]) -> bytes:
    """Assemble PNG-framed chunks (CRCs are not checked by the digest)."""
    body = b"".join(
        len(data).to_bytes(4, "big") + kind + data + b"\0\0\0\0"
        for kind, data in chunks
    )
    return b"\x89PNG\r\n\x1a\n" + body


def test_a_changed_figure_counts_as_a_changed_output():
    def figure_cell(png: bytes) -> nbformat.NotebookNode:
        cell = new_code_cell("plot()")
        cell.outputs = [
            nbformat.v4.new_output(
                "display_data",
                data={
                    "text/plain": "<Figure size 400x300 with 1 Axes>",
                    "image/png": base64.b64encode(png).decode(),
                },
            )
        ]
        return cell

    def notebook(pixels: bytes, software: bytes) -> nbformat.NotebookNode:
        png = png_bytes((b"tEXt", b"Software\0" + software), (b"IDAT", pixels))
        return new_notebook(cells=[figure_cell(png)])

    before = text_outputs(notebook(b"pixels one", b"matplotlib 3.11.2"))
    upgraded = text_outputs(notebook(b"pixels one", b"matplotlib 3.12.0"))
    redrawn = text_outputs(notebook(b"pixels two", b"matplotlib 3.11.2"))
    assert describe_changes(before, upgraded) == ""
    assert "png" in describe_changes(before, redrawn)
