"""Serving must run without torch: checked in fresh interpreters."""

import subprocess
import sys

from tests.conftest import REPO_ROOT

IMPORTS_SERVING = """
import sys
from serving.app import create_app
create_app()  # what each worker does: config, onnxruntime session, routes
import serving.__main__
import serving.server
loaded = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'training'})
print(','.join(loaded))
"""


def test_serving_never_imports_torch_or_training(onnx_path):
    # Run with the dev interpreter, where torch IS installed: serving must not
    # reach for it even when it could.
    result = subprocess.run(
        [sys.executable, "-c", IMPORTS_SERVING],
        cwd=REPO_ROOT,
        env={"SERVE_MODEL_PATH": str(onnx_path), "PATH": ""},
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == ""


def test_contract_imports_nothing_heavy():
    heavy = "{'torch', 'onnx', 'onnxruntime', 'numpy'}"
    code = f"import sys, contract; print(sorted(set(sys.modules) & {heavy}))"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "[]"


def test_serve_requirements_do_not_name_torch():
    lines = (REPO_ROOT / "requirements-serve.txt").read_text().splitlines()
    names = [
        line.split("==")[0].strip().lower()
        for line in lines
        if line and not line.startswith("#")
    ]
    assert names and not any(name.startswith("torch") for name in names)
    assert all("==" in line for line in lines if line and not line.startswith("#"))
