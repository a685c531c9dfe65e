"""Static checks of the Docker build and compose files (no Docker engine needed).

scripts/two_stage_native.sh runs the two stages for real, natively, in CI.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest
import yaml

from scripts.docker_stages import (
    CONTEXT_ORIGIN,
    Stage,
    context_files,
    copies,
    is_ignored,
    load_stages,
    parse_dockerfile,
    parse_dockerignore,
)
from serving.config import ENV_NAMES, ServeConfig
from tests.conftest import REPO_ROOT
from training.config import TrainConfig

DOCKERFILE = REPO_ROOT / "Dockerfile"
COMPOSE = REPO_ROOT / "docker-compose.yml"
COMPOSE_SCALE = REPO_ROOT / "docker-compose.scale.yml"
NGINX_CONF = REPO_ROOT / "deploy" / "nginx" / "default.conf"
NGINX_MAIN_CONF = REPO_ROOT / "deploy" / "nginx" / "nginx.conf"
SCRIPTS_DIR = Path(sysconfig.get_path("scripts"))  # where pip put hadolint
SERVE_STAGE = "serve"
SERVE_FILES_FROM_CONTEXT = ("contract.py", "serving/")
MODEL_FROM_TRAIN = "artifacts/model.onnx"
ROOT_USERS = {"", "root", "0"}


# --- helpers ---------------------------------------------------------------


class Reset:
    """A value tagged `!reset` in a compose override file."""

    def __init__(self, value: object) -> None:
        self.value = value


class ComposeLoader(yaml.SafeLoader):
    """YAML loader that knows compose's merge tags."""


def construct_reset(loader: ComposeLoader, node: yaml.Node) -> Reset:
    if isinstance(node, yaml.SequenceNode):
        return Reset(loader.construct_sequence(node))
    if isinstance(node, yaml.MappingNode):
        return Reset(loader.construct_mapping(node))
    return Reset(loader.construct_scalar(node))


ComposeLoader.add_constructor("!reset", construct_reset)


def load_compose(path: Path) -> dict:
    with path.open() as stream:
        return yaml.load(stream, ComposeLoader)


def untagged(value: object) -> object:
    """Replace Reset wrappers by their values, for schema validation."""
    if isinstance(value, Reset):
        return untagged(value.value)
    if isinstance(value, dict):
        return {key: untagged(item) for key, item in value.items()}
    if isinstance(value, list):
        return [untagged(item) for item in value]
    return value


def interpolate_defaults(text: str) -> str:
    """Resolve ${VAR:-default} to its default, as compose does with VAR unset."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", text)


def tool(name: str) -> str:
    """Return the path of a console script installed by requirements-dev.txt."""
    # Next to this interpreter only: a hadolint elsewhere on PATH may be
    # another version, with other rules.
    path = shutil.which(name, path=str(SCRIPTS_DIR))
    assert path, f"{name} not in {SCRIPTS_DIR}: pip install -r requirements-dev.txt"
    return path


def dockerfiles() -> list[Path]:
    """Every Dockerfile in the repository, skipping hidden directories (venvs)."""
    found = []
    for directory, subdirs, names in os.walk(REPO_ROOT):
        subdirs[:] = [d for d in subdirs if not d.startswith(".")]
        found += [Path(directory, n) for n in names if "Dockerfile" in n]
    return sorted(found)


def split_port(mapping: str) -> tuple[str, str]:
    """Split a short-syntax port mapping into (published, container)."""
    published, _, container = mapping.rpartition(":")
    return published, container


@pytest.fixture(scope="module")
def stages() -> dict[str, Stage]:
    return load_stages(DOCKERFILE)


@pytest.fixture(scope="module")
def context() -> list[str]:
    return context_files(REPO_ROOT)


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose(COMPOSE)


@pytest.fixture(scope="module")
def compose_scale() -> dict:
    return load_compose(COMPOSE_SCALE)


# --- hadolint ----------------------------------------------------------------


def test_hadolint_finds_nothing_in_any_dockerfile(tmp_path):
    files = dockerfiles()
    assert DOCKERFILE in files
    # An explicit config, so a developer's ~/.config/hadolint.yaml cannot mute
    # rules, and findings of every level (style included) count.
    config = tmp_path / "hadolint.yaml"
    config.write_text("failure-threshold: style\nignored: []\n")
    result = subprocess.run(
        [
            tool("hadolint"),
            "--config",
            str(config),
            "--format",
            "json",
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(result.stdout) == [], result.stdout
    assert result.returncode == 0, result.stderr


def test_every_hadolint_ignore_has_a_reason_above_it():
    for path in dockerfiles():
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            if "hadolint ignore=" in line:
                above = lines[number - 1].strip() if number else ""
                assert above.startswith("#") and "hadolint" not in above, (
                    f"{path.name}:{number + 1}: explain the ignored rule above it"
                )


# --- the serve stage -----------------------------------------------------------


def pip_install_args(run_value: str) -> list[list[str]]:
    """Return the arguments after `pip install` in each command of a RUN."""
    found = []
    for command in re.split(r"&&|;|\|\|", run_value):
        words = command.split()
        for index, word in enumerate(words[:-1]):
            if word.endswith("pip") and words[index + 1] == "install":
                found.append(words[index + 2 :])
    return found


def serve_stage_problems(stages: dict[str, Stage], context: list[str]) -> list[str]:
    """Return what makes the serve image more than serving code, model and venv."""
    problems = []
    names = list(stages)
    if names[-1] != SERVE_STAGE:
        problems.append(f"the last stage (the default target) is {names[-1]!r}")
    serve = stages[SERVE_STAGE]
    copied = copies(SERVE_STAGE, stages, context)
    helpers = {origin for origin, _, _ in copied} - {CONTEXT_ORIGIN, "train"}
    for stage in [serve, *(stages[name] for name in sorted(helpers))]:
        if "slim" not in stage.base:
            problems.append(f"{stage.name} starts from {stage.base}, not a slim image")
        for run in stage.all("RUN"):
            text = run.value
            if re.search(r"apt-get|apk |gcc|build-essential", text):
                problems.append(
                    f"{stage.name} line {run.line} installs system packages"
                )
            if re.search(r"\btrain", text):
                problems.append(f"{stage.name} line {run.line} mentions training")
            for args in pip_install_args(text):
                if stage is serve:
                    problems.append(
                        f"serve line {run.line} runs pip in the final image"
                    )
                elif len(args) != 2 or args[0] not in {"-r", "--requirement"}:
                    problems.append(f"{stage.name} line {run.line} installs {args}")
                elif Path(args[1]).name != "requirements-serve.txt":
                    problems.append(f"{stage.name} line {run.line} installs {args[1]}")
        for origin, source, _ in copies(stage.name, stages, context):
            if origin == CONTEXT_ORIGIN and stage is not serve:
                if source != "requirements-serve.txt":
                    problems.append(f"{stage.name} copies {source}")
    for origin, source, _ in copied:
        if origin == CONTEXT_ORIGIN and not source.startswith(SERVE_FILES_FROM_CONTEXT):
            problems.append(f"serve copies {source} from the build context")
        if origin == "train" and source != MODEL_FROM_TRAIN:
            problems.append(f"serve copies {source} from the train stage")
    if ("train", MODEL_FROM_TRAIN, MODEL_FROM_TRAIN) not in copied:
        problems.append(f"serve does not copy {MODEL_FROM_TRAIN} from the train stage")
    users = serve.all("USER")
    user = users[-1].value.split(":")[0] if users else ""
    if user in ROOT_USERS:
        problems.append(f"serve runs as {user or 'root (no USER)'}")
    return problems


def test_serve_stage_holds_only_serving_code_model_and_serve_requirements(
    stages, context
):
    assert serve_stage_problems(stages, context) == []


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (
            lambda text: text.replace(
                "COPY serving/ serving/",
                "COPY serving/ serving/\nCOPY training/ training/",
            ),
            "serve copies training/__init__.py from the build context",
        ),
        (
            lambda text: text.replace(
                "/tmp/requirements-serve.txt \\", "/tmp/requirements-serve.txt torch \\"
            ),
            "serve-deps line",
        ),
        (
            lambda text: text.replace(
                "COPY requirements-serve.txt /tmp/",
                "COPY requirements-serve.txt requirements-train.txt /tmp/",
            ),
            "serve-deps copies requirements-train.txt",
        ),
        (
            lambda text: text.replace(
                "-r /tmp/requirements-serve.txt", "-r /tmp/requirements-train.txt"
            ),
            "serve-deps line",
        ),
        (
            lambda text: text.replace("USER 10001:10001", "USER root"),
            "serve runs as root",
        ),
        (
            lambda text: text.replace(
                "COPY --from=train /app/artifacts/model.onnx",
                "COPY --from=train /app/artifacts/checkpoint.pt",
            ),
            "serve copies artifacts/checkpoint.pt from the train stage",
        ),
    ],
    ids=[
        "training-code",
        "extra-package",
        "copies-train-requirements",
        "installs-train-requirements",
        "root",
        "checkpoint",
    ],
)
def test_serve_stage_check_catches_a_broken_dockerfile(edit, problem, context):
    broken = edit(DOCKERFILE.read_text())
    assert broken != DOCKERFILE.read_text(), "the edit no longer applies"
    stages = {stage.name: stage for stage in parse_dockerfile(broken)}
    problems = serve_stage_problems(stages, context)
    assert any(problem in found for found in problems), problems


def test_serve_image_settings_agree_with_each_other(stages):
    serve = stages[SERVE_STAGE]
    env = serve.env()
    assert env["HOST"] == "0.0.0.0"  # reachable through the published port
    (expose,) = serve.all("EXPOSE")
    assert expose.value == env["PORT"]
    model_dest = f"{serve.workdir()}/{MODEL_FROM_TRAIN}"
    assert env["SERVE_MODEL_PATH"] == model_dest
    python_and_libraries = {
        "PATH",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONUNBUFFERED",
        "XDG_CACHE_HOME",
    }
    assert set(env) - python_and_libraries <= set(ENV_NAMES.values()), (
        "the image sets a variable serving/config.py does not read"
    )
    # The one writable place a read-only container needs is /tmp.
    assert env["XDG_CACHE_HOME"].startswith("/tmp/")
    (cmd,) = serve.all("CMD")
    assert cmd.words() == ["python", "-m", "serving"]
    (healthcheck,) = serve.all("HEALTHCHECK")
    probe = healthcheck_probe(healthcheck.value)
    assert "/readyz" in probe[-1] and "PORT" in probe[-1]


def healthcheck_probe(value: str) -> list[str]:
    """Return the exec-form command of a HEALTHCHECK instruction's value."""
    options, _, command = value.partition("CMD ")
    assert command.startswith("["), "use the exec form: no shell in between"
    return json.loads(command)


def test_train_stage_installs_cpu_torch_then_the_train_requirements(stages):
    (run, *_) = [r for r in stages["train"].all("RUN") if "pip install" in r.value]
    assert '--index-url "${TORCH_INDEX_URL}"' in run.value
    # The index is a build argument, PyTorch's CPU wheels unless told otherwise.
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    default = re.search(r"^ARG TORCH_INDEX_URL=(\S+)$", dockerfile, re.MULTILINE)
    assert default and default[1] == "https://download.pytorch.org/whl/cpu"
    assert stages["train"].all("ARG")[0].value == "TORCH_INDEX_URL"
    first, second = pip_install_args(run.value)
    assert "--no-deps" in first and second == ["-r", "requirements-train.txt"]
    # Both the Dockerfile and the native script take the pin from this line.
    requirements = (REPO_ROOT / "requirements-train.txt").read_text().splitlines()
    pins = [line for line in requirements if re.match(r"torch==", line)]
    assert len(pins) == 1 and re.fullmatch(r"torch==\d+\.\d+\.\d+", pins[0])


def test_the_build_pulls_no_frontend_image():
    """A `# syntax=` line makes BuildKit pull its frontend from Docker Hub."""
    first_lines = (REPO_ROOT / "Dockerfile").read_text().splitlines()[:5]
    assert not any(line.lower().startswith("# syntax") for line in first_lines)


def test_the_serve_venv_leaves_pip_and_setuptools_behind(stages):
    (run,) = [r for r in stages["serve-deps"].all("RUN") if "venv" in r.value]
    commands = [part.strip() for part in run.value.split("&&")]
    assert commands[-1].endswith("pip uninstall --yes --quiet pip setuptools")


# --- build context -----------------------------------------------------------


@pytest.mark.parametrize(
    ("patterns", "path", "ignored"),
    [  # cases from Docker's .dockerignore documentation
        (["*/temp*"], "somedir/temporary.txt", True),
        (["*/temp*"], "temp", False),
        (["*/*/temp*"], "somedir/subdir/temporary.txt", True),
        (["temp?"], "tempa", True),
        (["temp?"], "tempab", False),
        (["**/*.go"], "a/b/c.go", True),
        (["**/*.go"], "c.go", True),
        (["*.md", "!README*.md", "README-secret.md"], "README-secret.md", True),
        (["*.md", "!README*.md", "README-secret.md"], "README.md", False),
        (["*.md", "README-secret.md", "!README*.md"], "README-secret.md", False),
        (["*", "!serving"], "serving/app.py", False),  # a rule covers children
        (["*", "!serving", "**/__pycache__"], "serving/__pycache__/a.pyc", True),
    ],
)
def test_dockerignore_rules_follow_docker(patterns, path, ignored):
    assert is_ignored(path, parse_dockerignore("\n".join(patterns))) is ignored


def test_build_context_is_only_the_sources(tmp_path):
    files = [
        ".venv-train/lib/python3.11/site-packages/torch/__init__.py",
        ".cache/serve-venv-0/bin/python",
        ".git/HEAD",
        "artifacts/model.onnx",
        "notebooks/explore.ipynb",
        "serving/__pycache__/app.cpython-311.pyc",
        "training/__pycache__/train.cpython-311.pyc",
        "tests/test_app.py",
        "README.md",
        "contract.py",
        "requirements-serve.txt",
        "requirements-train.txt",
        "serving/app.py",
        "training/train.py",
    ]
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).touch()
    shutil.copy(REPO_ROOT / ".dockerignore", tmp_path)
    assert context_files(tmp_path) == [
        "contract.py",
        "requirements-serve.txt",
        "requirements-train.txt",
        "serving/app.py",
        "training/train.py",
    ]


def test_every_copy_source_is_in_the_build_context(stages, context):
    for name in stages:  # copies() raises ValueError naming a missing source
        copies(name, stages, context)
    text = DOCKERFILE.read_text() + "COPY notebooks/ notebooks/\n"
    broken = {stage.name: stage for stage in parse_dockerfile(text)}
    with pytest.raises(ValueError, match="notebooks/ matches no file"):
        copies(SERVE_STAGE, broken, context)


# --- compose ---------------------------------------------------------------------


def validate_compose(data: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run check-jsonschema's vendored copy of the compose-spec schema."""
    instance = tmp_path / "compose.json"
    instance.write_text(json.dumps(untagged(data)))
    return subprocess.run(
        [
            tool("check-jsonschema"),
            "--builtin-schema",
            "vendor.compose-spec",
            str(instance),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("path", [COMPOSE, COMPOSE_SCALE], ids=lambda p: p.name)
def test_compose_files_match_the_compose_spec(path, tmp_path):
    result = validate_compose(load_compose(path), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_schema_check_rejects_a_typo(compose, tmp_path):
    broken = json.loads(json.dumps(compose))
    broken["services"]["api"]["restrat"] = broken["services"]["api"].pop("restart")
    result = validate_compose(broken, tmp_path)
    assert result.returncode != 0 and "restrat" in result.stdout


BUILD_ARGS = {
    "PYTHON_IMAGE": "${PYTHON_IMAGE:-python:3.11-slim-bookworm}",
    "TORCH_INDEX_URL": "${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}",
}


def dockerfile_arg_defaults() -> dict[str, str]:
    text = (REPO_ROOT / "Dockerfile").read_text()
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.MULTILINE))


def test_compose_builds_with_the_dockerfile_defaults_unless_told(compose):
    """A mirror or an offline index is one variable away, today's values default."""
    defaults = dockerfile_arg_defaults()
    for service in ("api", "train"):
        args = compose["services"][service]["build"]["args"]
        assert args == BUILD_ARGS
        for name, value in args.items():
            assert interpolate_defaults(value) == defaults[name]


def test_compose_api_is_the_serve_target_with_health_and_restart(compose, stages):
    api = compose["services"]["api"]
    assert {k: v for k, v in api["build"].items() if k != "args"} == {
        "context": ".",
        "target": SERVE_STAGE,
    }
    env = stages[SERVE_STAGE].env()
    # Only the proxy publishes a port; the API is reached on the compose network.
    assert "ports" not in api
    assert api["expose"] == [env["PORT"]]
    (healthcheck,) = stages[SERVE_STAGE].all("HEALTHCHECK")
    assert api["healthcheck"]["test"] == ["CMD", *healthcheck_probe(healthcheck.value)]
    # Probed every second until healthy, so the proxy starts soon after readiness.
    assert api["healthcheck"]["start_interval"] == "1s"
    assert api["restart"] == "unless-stopped"


def test_compose_proxy_is_in_front_and_published_on_localhost(compose, stages):
    proxy = compose["services"]["proxy"]
    image, _, tag = interpolate_defaults(proxy["image"]).partition(":")
    assert proxy["image"].startswith("${PROXY_IMAGE:-")
    assert image == "nginx" and tag and tag != "latest"
    assert proxy["depends_on"]["api"]["condition"] == "service_healthy"
    (mapping,) = proxy["ports"]
    # 127.0.0.1 by default, like the native run; the published port follows PORT.
    parts = re.fullmatch(
        r"\$\{BIND_ADDRESS:-127\.0\.0\.1\}:\$\{PORT:-8000\}:(\d+)", mapping
    )
    assert parts, mapping
    container = parts[1]
    mounts = {}
    for volume in proxy["volumes"]:
        source, target, mode = volume.split(":")
        assert mode == "ro"
        mounts[(REPO_ROOT / source).resolve()] = target
    assert mounts == {
        NGINX_MAIN_CONF: "/etc/nginx/nginx.conf",
        NGINX_CONF: "/etc/nginx/conf.d/default.conf",
    }
    main = NGINX_MAIN_CONF.read_text()
    # One worker for the proxy's one CPU; the server block is included.
    assert re.search(r"^worker_processes 1;$", main, re.MULTILINE)
    assert float(proxy["deploy"]["resources"]["limits"]["cpus"]) == 1
    assert "include /etc/nginx/conf.d/*.conf;" in main
    conf = NGINX_CONF.read_text()
    assert re.search(rf"^\s*listen {container};", conf, re.MULTILINE)
    port = stages[SERVE_STAGE].env()["PORT"]
    assert f"http://api:{port}" in conf


@pytest.mark.parametrize("service", ["proxy", "api"])
def test_compose_services_run_hardened(compose, service):
    spec = compose["services"][service]
    assert spec["read_only"] is True
    assert "/tmp" in spec["tmpfs"]
    assert spec["cap_drop"] == ["ALL"]
    assert set(spec.get("cap_add", [])) <= {"CHOWN", "SETGID", "SETUID"}
    assert spec["security_opt"] == ["no-new-privileges:true"]
    limits = spec["deploy"]["resources"]["limits"]
    assert set(limits) == {"cpus", "memory", "pids"}


def test_compose_api_cpu_limit_matches_its_default_workers(compose):
    """SERVE_WORKERS=0 counts usable cores: the limit decides the workers."""
    limits = compose["services"]["api"]["deploy"]["resources"]["limits"]
    assert float(limits["cpus"]) == 2  # two workers, as the bench measures
    assert limits["pids"] >= 2 * ServeConfig().threads + 64


def test_compose_passes_every_serve_setting_but_those_the_image_fixes(compose):
    passed = compose["services"]["api"]["environment"]
    assert all("=" not in name for name in passed), "pass values through, set none"
    fixed_by_image = {"HOST", "PORT", "SERVE_MODEL_PATH"}
    settings = {name for name in ENV_NAMES.values() if name.startswith("SERVE_")}
    assert set(passed) == settings - fixed_by_image


def test_compose_train_profile_writes_the_model_to_the_host(compose, stages):
    train = compose["services"]["train"]
    assert train["profiles"] == ["train"]
    assert train["build"] == {"context": ".", "target": "train", "args": BUILD_ARGS}
    assert train["command"] == ["python", "-m", "training.export"]
    output_dir = f"{stages['train'].workdir()}/{TrainConfig().output_dir}"
    assert f"./artifacts:{output_dir}" in train["volumes"]
    assert not interpolate_defaults(train["user"]).startswith("0")
    passed = {name for name in train["environment"] if "=" not in name}
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"output_dir"}
    assert passed == {f"TRAIN_{name.upper()}" for name in fields}


def test_compose_scale_runs_one_worker_replicas_behind_the_same_proxy(
    compose, compose_scale
):
    api = compose_scale["services"]["api"]
    assert api["environment"] == ["SERVE_WORKERS=${SERVE_WORKERS:-1}"]
    assert api["deploy"]["resources"]["limits"]["cpus"] == "1"
    assert set(compose_scale["services"]) == {"api"}  # the base file's proxy
    conf = NGINX_CONF.read_text()
    # Docker's DNS, re-resolved while serving, finds every replica.
    assert re.search(r"^\s*resolver 127\.0\.0\.11 ", conf, re.MULTILINE)


def test_nginx_accepts_every_body_the_api_accepts():
    from serving.config import ServeConfig

    conf = NGINX_CONF.read_text()
    match = re.search(r"client_max_body_size\s+(\d+)m;", conf)
    assert match, "client_max_body_size must be set in megabytes"
    limit = int(match.group(1)) * 1024 * 1024
    assert limit >= ServeConfig().max_content_length
    # nginx's own 413 states the limit it applies.
    protocol_body, body = re.findall(r"return 413 '(.*)';", conf)
    assert json.loads(body)["error"]["details"] == {"limit_bytes": limit}
    assert "2 MiB" in json.loads(protocol_body)["error"]
    assert limit == 2 * 1024 * 1024


def test_nginx_own_errors_are_json_in_the_api_shape():
    # tests/test_nginx.py sends the requests behind these to a real nginx.
    conf = NGINX_CONF.read_text()
    redirects = re.findall(r"^\s*error_page ([\d ]+?) = (\S+);", conf, re.MULTILINE)
    # Each error location answers the protocols' paths first, then the rest.
    answers = dict(
        re.findall(
            r"location = (\S+) \{\s*if \(\$lb_protocol_path\) \{\s*return \d{3} "
            r"'.*';\s*\}\s*return (\d{3} '.*');",
            conf,
        )
    )
    protocol_answers = re.findall(
        r"if \(\$lb_protocol_path\) \{\s*return (\d{3}) '(.*)';", conf
    )
    assert len(protocol_answers) == len(answers)
    for _, body in protocol_answers:
        assert set(json.loads(body)) == {"error"}
    handled = {status for statuses, _ in redirects for status in statuses.split()}
    assert {"400", "413", "414", "494", "502", "503", "504", "505"} <= handled
    assert len(re.findall(r"^\s*error_page ", conf, re.MULTILINE)) == len(redirects)
    for _, uri in redirects:
        # A real URI: a named location fails for a request nginx could not
        # parse (it has no URI), with a 500 HTML page.
        assert uri.startswith("/"), uri
        status, _, body = answers[uri].partition(" ")
        error = json.loads(body.strip("'"))["error"]
        assert set(error) == {"code", "message", "details"}
        # X-Error-Code is taken from the URI's last segment.
        assert error["code"] == uri.rsplit("/", 1)[1]
