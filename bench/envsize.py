"""Report how much disk a requirements file's packages take in this environment.

Usage: python bench/envsize.py REQUIREMENTS_FILE

Sums the installed files (as listed in each package's RECORD) of the packages
named in the file and everything they depend on, so a train environment that
also holds test or benchmark tools is measured by what training needs. Also
reports the whole environment directory. Prints one JSON line. Standard
library only (plus `packaging`, which pip always vendors), so it runs in any
environment.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
from importlib import metadata
from pathlib import Path

try:
    from packaging.requirements import Requirement
except ImportError:  # an environment without packaging still has pip's copy
    from pip._vendor.packaging.requirements import Requirement

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*")


def canonical(name: str) -> str:
    """Normalise a distribution name the PEP 503 way."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(path: Path) -> list[str]:
    """Return the distribution names a requirements file lists."""
    names = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        match = NAME.match(line)
        if match and not line.startswith("-"):
            names.append(match.group())
    return names


def dependency_closure(names: list[str]) -> dict[str, metadata.Distribution]:
    """Return {name: distribution} for `names` and their installed dependencies."""
    found: dict[str, metadata.Distribution] = {}
    pending = list(names)
    while pending:
        name = canonical(pending.pop())
        if name in found:
            continue
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional dependency this platform does not install
        found[name] = distribution
        for spec in distribution.requires or []:
            requirement = Requirement(spec)
            # Skip extras ("extra == ...") and other platforms' dependencies.
            if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
                continue
            pending.append(requirement.name)
    return found


def installed_bytes(distributions: list[metadata.Distribution]) -> int:
    """Sum the sizes of the files these distributions installed."""
    seen: set[Path] = set()
    total = 0
    for distribution in distributions:
        for file in distribution.files or []:
            path = Path(distribution.locate_file(file)).resolve()
            if path in seen or not path.is_file():
                continue
            seen.add(path)
            total += path.stat().st_size
    return total


def directory_bytes(root: Path) -> int:
    """Sum the sizes of the regular files under `root`, like `du -s --apparent`."""
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder, name)
            if not path.is_symlink():
                total += path.stat().st_size
    return total


def main() -> None:
    """Print {"packages", "package_bytes", "environment_bytes", "python"}."""
    distributions = dependency_closure(requirement_names(Path(sys.argv[1])))
    report = {
        "packages": len(distributions),
        "package_bytes": installed_bytes(list(distributions.values())),
        "environment_bytes": directory_bytes(Path(sys.prefix)),
        "python": platform.python_version(),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
