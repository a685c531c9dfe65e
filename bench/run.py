"""Benchmark the production server against the server before it and the seed's design.

Usage (from a train environment with requirements-bench.txt, and wrk):

    make bench                        # or: python -m bench.run [--duration 5]

In one run, with every server started as a user starts it on 127.0.0.1 and
every load run bounded in time, this measures:

- the floors without HTTP, in the serve environment (bench/floors.py);
- from the serve environment (which also holds gunicorn, for the bench only):
  `python -m serving` (Flask + granian + onnxruntime, its default settings);
  the same app under gunicorn sync workers, as it was served before granian;
  and the same app plus a no-op JSON route (bench/noop_app.py) under exactly
  the production server and settings, the ceiling of the HTTP stack;
- the baseline bench/fastapi_torch.py under uvicorn from the train
  environment, typical (1 worker, asyncio + h11: `pip install fastapi uvicorn`)
  and tuned (2 workers, uvloop + httptools, no access log);
- for each: cold start (Popen to the first 200 from /readyz, or from /predict
  for the baseline, which has no readiness route; median of a few starts),
  /predict at 1, 8 and 32 connections (/predict/batch on production, /noop at
  8 and 32 on the no-op server) with wrk, each run made on all servers back
  to back, then the PSS of each worker and of the whole process tree;
- the size of the serve and train environments (bench/envsize.py).

Progress goes to stderr; the markdown report goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import report
from bench.drive import benchmark, log
from bench.load import LoadError, require_wrk
from bench.plan import (
    BATCH_SIZES,
    CHECKPOINT_FILENAME,
    GUNICORN,
    NOOP,
    PRODUCTION,
    LoadRun,
    baseline_specs,
    flask_specs,
    noop_runs,
    predict_runs,
    production_runs,
    variant_spec,
    write_bodies,
)
from bench.report import ServerResult
from bench.servers import (
    REPO_ROOT,
    ServerError,
    ServerSpec,
)
from bench.system import (
    CpuSnapshot,
    cpu_share,
    load_average,
    machine_summary,
)
from bench.targets import check_targets, targets_table
from contract import MODEL_FILENAME
from tests.serve_env import serve_env_python

EXPORT_TIMEOUT_S = 600  # training on a busy 2-core machine
HELPER_TIMEOUT_S = 120


def env_setting(text: str) -> tuple[str, str]:
    """Parse a NAME=VALUE command-line setting."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def env_settings(text: str) -> tuple[tuple[str, str], ...]:
    """Parse comma-separated NAME=VALUE settings: SERVE_THREADS=8,SERVE_WORKERS=2."""
    return tuple(env_setting(part) for part in text.split(","))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument(
        "--duration", type=float, default=5.0, help="seconds per load run (5)"
    )
    parser.add_argument(
        "--cold-starts",
        type=int,
        default=3,
        help="starts per server; the median is reported (3)",
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        help="reuse model.onnx + checkpoint.pt from here instead of exporting",
    )
    parser.add_argument(
        "--train-python",
        default=sys.executable,
        help="python of the train environment with the bench extras (this one)",
    )
    parser.add_argument(
        "--serve-python",
        help="python of a serve venv that also holds gunicorn, as make bench "
        "builds it (default: build one from requirements-serve.txt alone, which "
        "then needs --skip-baseline)",
    )
    parser.add_argument(
        "--serve-env",
        action="append",
        default=[],
        type=env_setting,
        metavar="NAME=VALUE",
        help="extra setting for every server of the service's app (production, "
        "no-op, gunicorn), e.g. SERVE_THREADS=8",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        type=env_settings,
        metavar="NAME=VALUE[,...]",
        help="also run /predict on a production server with these settings, "
        "back to back with the others, e.g. --variant SERVE_THREADS=8",
    )
    parser.add_argument(
        "--skip-baseline",
        action="store_true",
        help="skip gunicorn and FastAPI: production and no-op only",
    )
    return parser.parse_args(argv)


def run_helper(command: list[str], timeout: float = HELPER_TIMEOUT_S) -> dict:
    """Run a helper script from the repository; return the JSON it prints."""
    completed = subprocess.run(
        command,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed:\n{completed.stderr}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def export_model(train_python: str, output_dir: Path) -> Path:
    """Train and export into `output_dir` with the train environment."""
    log(f"exporting the model into {output_dir} (trains for a few seconds)")
    completed = subprocess.run(
        [train_python, "-m", "training.export"],
        cwd=REPO_ROOT,
        env={**os.environ, "TRAIN_OUTPUT_DIR": str(output_dir)},
        capture_output=True,
        text=True,
        timeout=EXPORT_TIMEOUT_S,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"export failed:\n{completed.stdout}{completed.stderr}")
    return output_dir


def measure_floors(serve_python: str, model_path: Path, bodies: dict) -> dict:
    """Run bench/floors.py in the serve env; add the other processes' CPU %."""
    log("measuring the floors in the serve environment")
    before = CpuSnapshot.take([])
    floors = run_helper(
        [
            serve_python,
            "-m",
            "bench.floors",
            str(model_path),
            str(bodies["predict"]),
            str(bodies[f"batch-{BATCH_SIZES[-1]}"]),
        ]
    )
    # The floors process is a waited-for child, so it counts as "load generator".
    floors["other_cpu_percent"] = cpu_share(before, CpuSnapshot.take([])).other
    return floors


def build_plan(
    args: argparse.Namespace, serve_python: str, model_dir: Path, predict_path: Path
) -> list[tuple[ServerSpec, list[LoadRun]]]:
    """Pair each server to start with the load runs it gets."""
    predict_body = predict_path.read_bytes()
    model_path = model_dir / MODEL_FILENAME
    overrides = dict(args.serve_env)
    specs = flask_specs(serve_python, model_path, predict_body, overrides)
    # gunicorn and the variants get production's runs too: the same loads before
    # the PSS reading (a 1024-row batch leaves bigger buffers behind).
    runs = {PRODUCTION: production_runs(), GUNICORN: production_runs()}
    runs[NOOP] = noop_runs()
    if args.skip_baseline:
        del runs[GUNICORN]
    plan = [(spec, runs[spec.name]) for spec in specs if spec.name in runs]
    plan += [
        (
            variant_spec(serve_python, model_path, predict_body, overrides, variant),
            production_runs(),
        )
        for variant in args.variant
    ]
    if not args.skip_baseline:
        require_gunicorn(serve_python)
        checkpoint = model_dir / CHECKPOINT_FILENAME
        baselines = baseline_specs(args.train_python, checkpoint, predict_body)
        plan += [(spec, predict_runs()) for spec in baselines]
    return plan


def require_gunicorn(serve_python: str) -> None:
    """Fail early, saying how to fix it, if the serve env has no gunicorn."""
    check = [serve_python, "-c", "import gunicorn"]
    if subprocess.run(check, capture_output=True, check=False).returncode != 0:
        raise RuntimeError(
            f"{serve_python} has no gunicorn for the '{GUNICORN}' target: use "
            "`make bench` (it builds .venv-bench-serve), install "
            "requirements-bench-serve.txt into it, or pass --skip-baseline"
        )


def environment_sizes(serve_python: str, train_python: str) -> dict[str, dict]:
    """Measure both environments with bench/envsize.py."""
    sizes = {}
    for name, python in (("serve", serve_python), ("train", train_python)):
        requirements = REPO_ROOT / f"requirements-{name}.txt"
        sizes[name] = run_helper([python, "bench/envsize.py", str(requirements)])
    return sizes


def render(
    command: str,
    started: datetime,
    elapsed_s: float,
    loads: tuple[str, str],
    floors: dict,
    sizes: dict[str, dict],
    results: list[ServerResult],
) -> str:
    """Assemble the markdown report."""
    by_name = {result.name: result for result in results}
    checked = check_targets(by_name, floors, sizes, BATCH_SIZES[-1])
    return "\n\n".join(
        [
            f"Command: `{command}`  \n"
            f"Machine: {machine_summary()}, Python {sizes['serve']['python']}  \n"
            f"Run: {started:%Y-%m-%d %H:%M} UTC, {elapsed_s:.0f} s; load average "
            f"{loads[0]} before, {loads[1]} after",
            report.floors_table(floors),
            report.load_table(results),
            report.noise_note(results, floors),
            report.footprint_table(results),
            report.env_table(sizes),
            targets_table(checked),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m bench.run`."""
    args = parse_args(argv)
    command = shlex.join(["python", "-m", "bench.run", *sys.argv[1:]])
    started, clock = datetime.now(UTC), time.perf_counter()
    load_before = load_average()
    try:
        require_wrk()
        with tempfile.TemporaryDirectory(prefix="bench-") as temp:
            workdir = Path(temp)
            model_dir = args.model_dir or export_model(
                args.train_python, workdir / "artifacts"
            )
            serve_python = args.serve_python or str(serve_env_python())
            bodies = write_bodies(workdir)
            floors = measure_floors(serve_python, model_dir / MODEL_FILENAME, bodies)
            sizes = environment_sizes(serve_python, args.train_python)
            plan = build_plan(args, serve_python, model_dir, bodies["predict"])
            results = benchmark(plan, bodies, args.cold_starts, args.duration, workdir)
    except (LoadError, ServerError, RuntimeError, subprocess.SubprocessError) as error:
        print(f"bench failed: {error}", file=sys.stderr)
        return 1
    print(
        render(
            command,
            started,
            time.perf_counter() - clock,
            (load_before, load_average()),
            floors,
            sizes,
            results,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
