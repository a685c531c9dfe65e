"""Execute the notebooks top to bottom and save them with their outputs.

Usage: python -m notebooks.execute [--check] [NOTEBOOK ...]

Without --check each notebook is re-run in a fresh kernel and written back;
with --check nothing is written and the exit status says whether the committed
outputs are still what the code produces. The test suite uses the same functions.
"""

from __future__ import annotations

import argparse
import base64
import difflib
import hashlib
import sys
import tempfile
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parent
NOTEBOOKS = (NOTEBOOK_DIR / "eda.ipynb", NOTEBOOK_DIR / "training.ipynb")
KERNEL_NAME = "python3"
# Per cell; the slowest one trains for 25 epochs, a few seconds on one core.
CELL_TIMEOUT_SECONDS = 300
# Cell metadata that a run or a viewer leaves behind (timings, scroll state): it
# differs every time, so it is dropped to keep re-runs down to real changes.
VOLATILE_CELL_METADATA = ("execution", "collapsed", "scrolled")


def make_kernel_manager(socket_dir: Path) -> KernelManager:
    """Return a manager that starts ipykernel on this very interpreter."""
    # No kernel_dirs: a "python3" kernelspec registered by another environment
    # (e.g. `ipykernel install --user` from some other venv) would otherwise win.
    # What remains is ipykernel's built-in spec, whose argv is sys.executable.
    specs = KernelSpecManager(kernel_dirs=[])
    # Unix sockets under an absolute path rather than localhost TCP: no ports to
    # collide with on a shared machine, and no warning from ipykernel about
    # unencrypted TCP. (The default IPC path is relative, and the kernel runs in
    # another folder than this process.)
    return KernelManager(
        kernel_name=KERNEL_NAME,
        kernel_spec_manager=specs,
        transport="ipc",
        ip=str(socket_dir / "kernel"),
    )


def strip_volatile_metadata(notebook: nbformat.NotebookNode) -> None:
    """Drop per-run timing and view state from the cells, in place."""
    for cell in notebook.cells:
        for key in VOLATILE_CELL_METADATA:
            cell.metadata.pop(key, None)


def execute_notebook(path: Path) -> nbformat.NotebookNode:
    """Run the notebook at `path` in a fresh kernel; return it with new outputs.

    The kernel starts in the notebook's folder, as Jupyter does. Raises
    nbclient's CellExecutionError at the first failing cell.
    """
    notebook = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    with tempfile.TemporaryDirectory(prefix="kernel-") as socket_dir:
        client = NotebookClient(
            notebook,
            km=make_kernel_manager(Path(socket_dir)),
            timeout=CELL_TIMEOUT_SECONDS,
            record_timing=False,
            # One stream output per cell, not chunks cut wherever a flush fell.
            coalesce_streams=True,
            resources={"metadata": {"path": str(path.parent)}},
        )
        # nbclient leaves a kernel manager it was handed running; this one is ours.
        client.execute(cleanup_kc=True)
    strip_volatile_metadata(notebook)
    return notebook


PNG_TEXT_CHUNKS = {b"tEXt", b"iTXt", b"zTXt"}


def png_image_digest(png: bytes) -> str:
    """Hash a PNG's image chunks, skipping its text ones.

    matplotlib writes its own version into a text chunk; leaving it out keeps a
    library upgrade that draws the same pixels from counting as a change.
    """
    hasher = hashlib.sha256()
    position = 8  # after the PNG signature
    while position + 8 <= len(png):
        length = int.from_bytes(png[position : position + 4], "big")
        kind = png[position + 4 : position + 8]
        if kind not in PNG_TEXT_CHUNKS:
            hasher.update(png[position + 4 : position + 8 + length])
        position += 12 + length  # length, type, data, CRC
    return hasher.hexdigest()[:16]


def text_outputs(notebook: nbformat.NotebookNode) -> list[str]:
    """Return what each code cell shows: text, plain reprs, errors, figure digests."""
    texts = []
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        parts: list[str] = []
        last_stream = None
        for output in cell.outputs:
            if output.output_type == "stream":
                # A stream may arrive in several chunks; only the text matters.
                if output.name == last_stream:
                    parts[-1] += output.text
                else:
                    parts.append(f"[{output.name}] {output.text}")
                last_stream = output.name
                continue
            last_stream = None
            if output.output_type == "error":
                parts.append(f"[error] {output.ename}: {output.evalue}")
            else:
                part = f"[{output.output_type}] {output.data.get('text/plain')}"
                if "image/png" in output.data:
                    png = base64.b64decode(output.data["image/png"])
                    part += f" png {png_image_digest(png)}"
                parts.append(part)
        texts.append("\n".join(parts))
    return texts


def describe_changes(committed: list[str], fresh: list[str]) -> str:
    """Return a unified diff of two text_outputs lists ("" when they are equal)."""
    before = [f"# code cell {i}\n{text}" for i, text in enumerate(committed, 1)]
    after = [f"# code cell {i}\n{text}" for i, text in enumerate(fresh, 1)]
    lines = difflib.unified_diff(
        "\n".join(before).splitlines(),
        "\n".join(after).splitlines(),
        "committed",
        "fresh",
        lineterm="",
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Re-run the notebooks, then write them back or (--check) compare only."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, don't write")
    parser.add_argument("notebooks", nargs="*", type=Path, default=list(NOTEBOOKS))
    args = parser.parse_args(argv)
    stale = []
    for path in args.notebooks:
        print(f"executing {path}", flush=True)
        fresh = execute_notebook(path)
        if args.check:
            committed = nbformat.read(path, as_version=nbformat.NO_CONVERT)
            changes = describe_changes(text_outputs(committed), text_outputs(fresh))
            if changes:
                stale.append(path)
                print(changes)
        else:
            nbformat.write(fresh, path)
    if stale:
        print(f"outdated outputs: {', '.join(map(str, stale))}; run `make notebooks`")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
