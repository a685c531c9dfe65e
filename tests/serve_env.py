"""Build (once) a virtual environment from requirements-serve.txt alone."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import venv
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = REPO_ROOT / "requirements-serve.txt"
CACHE_DIR = REPO_ROOT / ".cache"


def serve_env_python() -> Path:
    """Return the python of a venv holding only the serving requirements.

    The venv is keyed by the requirements file's hash, so a change to the file
    builds a new one and a rerun reuses the last.
    """
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:12]
    env_dir = CACHE_DIR / f"serve-venv-{digest}"
    python = env_dir / "bin" / "python"
    marker = env_dir / ".complete"
    if marker.is_file():
        return python
    print(f"building {env_dir} from {REQUIREMENTS.name}", file=sys.stderr)
    venv.EnvBuilder(clear=True, with_pip=True).create(env_dir)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "-r", str(REQUIREMENTS)],
        check=True,
    )
    marker.touch()
    return python
