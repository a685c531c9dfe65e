"""Read the Dockerfile's stages and the build context as Docker sees them.

The Dockerfile is the one home of "what goes into each image". The static
tests (tests/test_docker.py) check its stages through this module, and
scripts/two_stage_native.sh asks it which files each stage copies, so the
native run copies exactly what the image build copies.

Usage: python scripts/docker_stages.py copies STAGE
    Prints one line per copied file: ORIGIN, SOURCE and DESTINATION,
    tab-separated. ORIGIN is "context" (SOURCE relative to the repository) or
    the stage copied from (SOURCE relative to that stage's WORKDIR, or
    absolute); DESTINATION is relative to STAGE's WORKDIR, or absolute.

Plain standard library: the native script runs it with any Python 3.11.
It reads the syntax this repository's Dockerfile uses: backslash
continuations, comment lines, --flag=value options, exec-form JSON arrays,
global ARG defaults in FROM. It raises ValueError on what it knows it would
misread (unnamed stages, wildcards in COPY, brackets or backslashes in
.dockerignore); heredocs (RUN <<EOF) are not supported.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
CONTEXT_ORIGIN = "context"
FLAG = re.compile(r"--([a-z-]+)(?:=(\S+))?")


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction, continuation lines joined."""

    keyword: str  # upper case: FROM, COPY, RUN, ...
    flags: tuple[tuple[str, str], ...]  # ("from", "train"), ("mount", "type=...")
    value: str  # the rest of the line after the flags
    line: int  # where it starts in the file, for error messages

    def flag(self, name: str) -> str | None:
        """Return the value of --name, or None if absent."""
        return next((value for key, value in self.flags if key == name), None)

    def words(self) -> list[str]:
        """Split the value: a JSON array (exec form) or shell-like words."""
        if self.value.startswith("["):
            return json.loads(self.value)
        return shlex.split(self.value)


@dataclass(frozen=True)
class Stage:
    """A FROM and the instructions up to the next FROM."""

    name: str
    base: str  # the image or stage it starts from, ARG defaults substituted
    instructions: tuple[Instruction, ...]

    def all(self, keyword: str) -> list[Instruction]:
        """Return this stage's instructions with `keyword`, in order."""
        return [i for i in self.instructions if i.keyword == keyword]

    def workdir(self, before: Instruction | None = None) -> str:
        """Return the WORKDIR in effect at `before` (default: the stage's end)."""
        workdir = "/"
        for instruction in self.instructions:
            if instruction is before:
                break
            if instruction.keyword == "WORKDIR":
                workdir = posixpath.join(workdir, instruction.value)
        return workdir

    def env(self) -> dict[str, str]:
        """Return the variables this stage's ENV instructions set."""
        values: dict[str, str] = {}
        for instruction in self.all("ENV"):
            for word in instruction.words():
                key, sep, value = word.partition("=")
                if not sep:
                    raise ValueError(f"line {instruction.line}: use ENV KEY=VALUE")
                values[key] = value
        return values


def logical_lines(text: str) -> list[tuple[int, str]]:
    """Join backslash continuations; drop blank and comment lines, as BuildKit does."""
    lines: list[tuple[int, str]] = []
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # also inside a continuation: BuildKit skips these too
        if not parts:
            start = number
        continued = stripped.endswith("\\")
        parts.append(stripped[:-1].strip() if continued else stripped)
        if not continued:
            lines.append((start, " ".join(parts)))
            parts = []
    if parts:
        raise ValueError(f"line {start}: continuation runs past the end of the file")
    return lines


def parse_instruction(number: int, line: str) -> Instruction:
    """Split one logical line into keyword, --flags and value."""
    keyword, _, rest = line.partition(" ")
    rest = rest.strip()
    flags = []
    while match := FLAG.match(rest):
        flags.append((match[1], match[2] or ""))
        rest = rest[match.end() :].strip()
    return Instruction(keyword.upper(), tuple(flags), rest, number)


def substitute_args(text: str, args: dict[str, str]) -> str:
    """Replace ${NAME} and $NAME with the global ARG defaults."""

    def default(match: re.Match[str]) -> str:
        name = match[1] or match[2]
        if name not in args:
            raise ValueError(f"{text}: ARG {name} has no default before FROM")
        return args[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", default, text)


def parse_dockerfile(text: str) -> list[Stage]:
    """Return the stages in file order; every stage must be named (FROM x AS name)."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    current: list[Instruction] = []
    header: tuple[str, str] | None = None
    for number, line in logical_lines(text):
        instruction = parse_instruction(number, line)
        if instruction.keyword == "FROM":
            if header:
                stages.append(Stage(*header, tuple(current)))
            words = instruction.words()
            if len(words) != 3 or words[1].upper() != "AS":
                raise ValueError(
                    f"line {number}: name every stage (FROM image AS name)"
                )
            header, current = (words[2], substitute_args(words[0], global_args)), []
        elif header is None:
            if instruction.keyword != "ARG":
                raise ValueError(f"line {number}: only ARG may precede the first FROM")
            name, _, default = instruction.value.partition("=")
            global_args[name] = default
        else:
            current.append(instruction)
    if header is None:
        raise ValueError("the Dockerfile has no FROM")
    stages.append(Stage(*header, tuple(current)))
    return stages


def load_stages(path: Path = DOCKERFILE) -> dict[str, Stage]:
    """Parse the Dockerfile at `path` into {stage name: Stage}."""
    return {stage.name: stage for stage in parse_dockerfile(path.read_text())}


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """Translate a .dockerignore pattern (Go filepath.Match plus **) to a regex."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


@dataclass(frozen=True)
class IgnoreRule:
    """One .dockerignore line: a pattern, and whether `!` re-includes it."""

    pattern: str
    include: bool
    regex: re.Pattern[str]


def parse_dockerignore(text: str) -> list[IgnoreRule]:
    """Read .dockerignore lines in order; later lines win."""
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        include = line.startswith("!")
        pattern = posixpath.normpath(line.removeprefix("!").strip()).lstrip("/")
        if "[" in pattern or "\\" in pattern:
            raise ValueError(f"unsupported .dockerignore pattern: {line!r}")
        rules.append(IgnoreRule(pattern, include, pattern_regex(pattern)))
    return rules


def is_ignored(path: str, rules: list[IgnoreRule]) -> bool:
    """Apply the rules to a relative path: a rule matches the path or any parent."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for rule in rules:
        if any(rule.regex.fullmatch(candidate) for candidate in candidates):
            ignored = not rule.include
    return ignored


def could_reinclude(directory: str, rules: list[IgnoreRule]) -> bool:
    """Whether an `!` rule might match something below an ignored directory."""
    return any(
        rule.include
        and (rule.pattern.startswith(directory + "/") or rule.pattern[0] in "*?")
        for rule in rules
    )


def context_files(
    root: Path = REPO_ROOT, rules: list[IgnoreRule] | None = None
) -> list[str]:
    """List the files (relative, sorted) that `docker build root` would send."""
    if rules is None:
        rules = parse_dockerignore((root / ".dockerignore").read_text())
    files = []
    for directory, subdirs, names in os.walk(root):
        relative_dir = Path(directory).relative_to(root).as_posix()
        prefix = "" if relative_dir == "." else relative_dir + "/"
        # Skip ignored trees (venvs, .git) unless an exception could reach inside.
        subdirs[:] = sorted(
            d
            for d in subdirs
            if not is_ignored(prefix + d, rules) or could_reinclude(prefix + d, rules)
        )
        files.extend(
            prefix + name for name in names if not is_ignored(prefix + name, rules)
        )
    return sorted(files)


def stage_relative(path: str, workdir: str) -> str:
    """Express an absolute path in a stage relative to its WORKDIR when inside it."""
    path = posixpath.normpath(path)
    if workdir != "/" and path.startswith(workdir.rstrip("/") + "/"):
        return path[len(workdir.rstrip("/")) + 1 :]
    return path


def copies(
    stage_name: str,
    stages: dict[str, Stage],
    context: list[str],
) -> list[tuple[str, str, str]]:
    """Expand the stage's COPY instructions into (origin, source, destination).

    Copies from the build context are expanded to one entry per file, after
    .dockerignore; a source that matches no file raises ValueError, as the
    build would fail on it.
    """
    stage = stages[stage_name]
    entries = []
    for instruction in stage.all("COPY"):
        *sources, destination = instruction.words()
        origin = instruction.flag("from") or CONTEXT_ORIGIN
        target = posixpath.join(stage.workdir(before=instruction), destination)
        for source in sources:
            if any(char in source for char in "*?["):
                raise ValueError(f"line {instruction.line}: no wildcards in COPY")
            if origin != CONTEXT_ORIGIN:
                source_stage = stages[origin]
                source_path = posixpath.join(source_stage.workdir(), source)
                into = (
                    target + posixpath.basename(source)
                    if target.endswith("/")
                    else target
                )
                entries.append(
                    (
                        origin,
                        stage_relative(source_path, source_stage.workdir()),
                        stage_relative(into, stage.workdir()),
                    )
                )
                continue
            expanded = expand_context_copy(source, target, context)
            if not expanded:
                raise ValueError(
                    f"line {instruction.line}: COPY {source} matches no file in the "
                    "build context (check .dockerignore)"
                )
            entries.extend(
                (CONTEXT_ORIGIN, path, stage_relative(dest, stage.workdir()))
                for path, dest in expanded
            )
    return entries


def expand_context_copy(
    source: str, target: str, context: list[str]
) -> list[tuple[str, str]]:
    """Map one COPY source to (context file, absolute destination) pairs."""
    source = posixpath.normpath(source)
    if source in context:  # a file
        if target.endswith("/"):
            return [(source, target + posixpath.basename(source))]
        return [(source, target)]
    # A directory: Docker copies its contents into the destination.
    inside = [path for path in context if path.startswith(source + "/")]
    return [(path, posixpath.join(target, path[len(source) + 1 :])) for path in inside]


def main(argv: list[str]) -> int:
    """Print the copies of one stage (see the module docstring)."""
    if len(argv) != 2 or argv[0] != "copies":
        print(__doc__, file=sys.stderr)
        return 2
    stages = load_stages()
    if argv[1] not in stages:
        print(f"no stage {argv[1]!r}; stages: {', '.join(stages)}", file=sys.stderr)
        return 2
    for entry in copies(argv[1], stages, context_files()):
        print("\t".join(entry))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
