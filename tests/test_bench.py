"""The benchmark's pure helpers: the plan, parsing wrk and /proc, ratios, tables.

No timing here: the benchmark itself runs with `make bench`.
"""

from __future__ import annotations

import argparse
import os
import socket
from pathlib import Path

import pytest

from bench.envsize import canonical, requirement_names
from bench.load import (
    LoadError,
    LoadResult,
    body_headers,
    parse_wrk_summary,
    wrk_command,
)
from bench.plan import (
    GUNICORN,
    NOOP,
    NOOP_PATH,
    PRODUCTION,
    TUNED,
    TYPICAL,
    V2_INFER_PATH,
    LoadRun,
    flask_specs,
    noop_runs,
    predict_runs,
    production_runs,
    schedule,
    variant_spec,
    worker_count,
    write_bodies,
)
from bench.report import ServerResult, footprint_table, format_rate, markdown_table
from bench.run import env_setting, env_settings
from bench.system import (
    CpuShare,
    CpuSnapshot,
    cpu_share,
    is_helper,
    listener_pids,
    listening_inodes,
    parse_smaps_rollup,
)
from bench.targets import Target, check_targets, ratio

WRK_OUTPUT = """Running 5s test @ http://127.0.0.1:8000/predict
  1 threads and 8 connections
Requests/sec:   1112.48
BENCH requests=5000 duration_us=2000000 p50_us=1500 p99_us=12250 max_us=40000 \
connect_errors=0 read_errors=1 write_errors=0 status_errors=2 timeouts=0
"""


def test_wrk_summary_is_parsed_into_rates_and_milliseconds():
    result = parse_wrk_summary(WRK_OUTPUT, rows_per_request=64)
    assert result == LoadResult(
        requests=5000,
        seconds=2.0,
        p50_ms=1.5,
        p99_ms=12.25,
        max_ms=40.0,
        errors=3,
        rows_per_request=64,
    )
    assert result.requests_per_s == 2500
    assert result.rows_per_s == 2500 * 64


@pytest.mark.parametrize(
    "output",
    ["Requests/sec: 10\n", "BENCH requests=5 duration_us=10\n", "BENCH requests=x\n"],
)
def test_wrk_output_without_a_full_summary_is_an_error(output):
    with pytest.raises(LoadError):
        parse_wrk_summary(output)


def test_wrk_command_uses_the_lua_script_and_passes_the_body_after_dashes():
    command = wrk_command("wrk", "http://127.0.0.1:1/p", Path("b.json"), 32, 5)
    assert command[:5] == ["wrk", "-t1", "-c32", "-d5s", "--timeout=5s"]
    assert command[-3:] == ["http://127.0.0.1:1/p", "--", "b.json"]
    assert Path(command[command.index("-s") + 1]).name == "post.lua"


def test_smaps_rollup_fields_are_read_in_kib():
    text = (
        "55dd34d5d000-7ffce4c62000 ---p 00000000 00:00 0  [rollup]\n"
        "Rss:                1728 kB\n"
        "Pss:                 345 kB\n"
        "Pss_Anon:            112 kB\n"
    )
    assert parse_smaps_rollup(text) == {"Rss": 1728, "Pss": 345, "Pss_Anon": 112}


def proc_net_tcp_line(local: str, remote: str, state: str, inode: int) -> str:
    """A /proc/net/tcp row: addresses in hex, the state code, the socket inode."""
    queues_and_timers = "00000000:00000000 00:00000000 00000000"
    return f"   0: {local} {remote} {state} {queues_and_timers} 0 0 {inode} 1"


PROC_NET_TCP = "\n".join(
    [
        "  sl  local_address rem_address   st tx_queue rx_queue ... inode",
        proc_net_tcp_line("0100007F:1F40", "00000000:0000", "0A", 111),
        proc_net_tcp_line("0100007F:1F40", "00000000:0000", "0A", 222),
        proc_net_tcp_line("0100007F:1F40", "0100007F:D431", "01", 333),
        proc_net_tcp_line("0100007F:1F41", "00000000:0000", "0A", 444),
    ]
)


def test_listening_sockets_are_found_by_port_and_state():
    # Port 8000 is 1F40: two listeners (SO_REUSEPORT), one established connection.
    assert listening_inodes(PROC_NET_TCP, 8000) == {111, 222}
    assert listening_inodes(PROC_NET_TCP, 8001) == {444}
    assert listening_inodes(PROC_NET_TCP, 9000) == set()


def test_the_process_listening_on_a_port_is_found():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert listener_pids(listener.getsockname()[1]) == {os.getpid()}


def test_cpu_share_is_in_percent_of_one_core_and_the_rest_is_other():
    before = CpuSnapshot(100.0, 200.0, 10.0, 1.0, 0.5)
    # 10 s of wall time on 2 cores = 20 CPU seconds; 15 of them busy.
    after = CpuSnapshot(115.0, 220.0, 18.0, 3.0, 1.0)
    assert cpu_share(before, after, cores=2) == CpuShare(
        server=80.0, load_generator=20.0, other=45.0
    )


def test_cpu_share_splits_the_server_by_worker_busiest_first():
    before = CpuSnapshot(100.0, 200.0, 10.0, 1.0, 0.5, workers=(4.0, 5.0))
    # 10 s of wall time: the first worker used 2 s, the second 8 s.
    after = CpuSnapshot(115.0, 220.0, 20.0, 3.0, 1.0, workers=(6.0, 13.0))
    assert cpu_share(before, after, cores=2).workers == (80.0, 20.0)


def test_target_verdicts_follow_the_direction_of_the_bound():
    assert Target("faster", 2.5, 2.0, at_least=True).met is True
    assert Target("faster", 1.5, 2.0, at_least=True).met is False
    assert Target("smaller", 0.2, 1 / 3, at_least=False).met is True
    assert Target("missing", None, 1.0, at_least=True).met is None
    assert Target("smaller", 0.5, 1 / 3, at_least=False).row() == [
        "smaller",
        "0.50",
        "≤ 0.33",
        "**not met**",
    ]
    # A ratio that rounds to its bound gets one more digit.
    assert Target("close", 0.7478, 0.75, at_least=True).row()[1] == "0.748"
    assert Target("close", 0.7512, 0.75, at_least=True).row()[1] == "0.751"


@pytest.mark.parametrize(
    ("numerator", "denominator", "expected"),
    [(3.0, 2.0, 1.5), (None, 2.0, None), (3.0, None, None), (3.0, 0.0, None)],
)
def test_ratio_is_none_when_a_side_is_missing(numerator, denominator, expected):
    assert ratio(numerator, denominator) == expected


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "n/a"), (66.2, "66.2"), (4523.0, "4.52 k"), (2_594_831.0, "2.59 M")],
)
def test_rates_are_formatted_with_three_significant_digits(value, text):
    assert format_rate(value) == text


def test_markdown_table_has_a_separator_row():
    assert markdown_table(["a", "b"], [["1", "2"]]).splitlines() == [
        "| a | b |",
        "|---|---|",
        "| 1 | 2 |",
    ]


def test_requirement_names_skip_comments_options_and_versions(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(
        "# comment\n-r other.txt\ntorch==2.13.0  # pinned\nprometheus-client==0.26.0\n"
        "\nuvicorn[standard]>=0.30\n"
    )
    assert requirement_names(requirements) == [
        "torch",
        "prometheus-client",
        "uvicorn",
    ]
    assert canonical("Prometheus_Client") == "prometheus-client"


def test_schedule_puts_runs_compared_in_a_ratio_next_to_each_other():
    runs = schedule([production_runs(), noop_runs(), predict_runs()])
    assert len(runs) == len(set(runs)) == len(production_runs()) + len(noop_runs())
    for connections in (8, 32):
        predict = runs.index(LoadRun("/predict", "predict", connections))
        noop = runs.index(LoadRun(NOOP_PATH, "predict", connections))
        assert abs(predict - noop) == 1
    # Single rows first, then the batches from small to large.
    assert [run.rows for run in runs] == sorted(run.rows for run in runs)
    assert runs[0] == LoadRun("/predict", "predict", 1)


def test_the_noop_route_gets_the_predict_body_at_the_compared_connections():
    assert {(run.body, run.connections) for run in noop_runs()} == {
        ("predict", 8),
        ("predict", 32),
    }


def flask_spec_table(overrides: dict[str, str]) -> dict:
    """Build the service's server specs with `overrides`; return {name: spec}."""
    specs = flask_specs("/venv/bin/python", Path("/m/model.onnx"), b"{}", overrides)
    return {spec.name: spec for spec in specs}


def test_the_three_servers_of_the_app_share_one_environment():
    specs = flask_spec_table({"SERVE_THREADS": "8"})
    assert list(specs) == [PRODUCTION, GUNICORN, NOOP]
    for spec in specs.values():
        assert spec.env == {
            "SERVE_MODEL_PATH": "/m/model.onnx",
            "SERVE_THREADS": "8",
        }
    assert specs[PRODUCTION].command == ["/venv/bin/python", "-m", "serving"]
    assert specs[NOOP].command == ["/venv/bin/python", "-m", "bench.launch", "noop"]


def test_gunicorn_runs_the_app_factory_on_sync_workers_with_a_fresh_metrics_dir():
    gunicorn = flask_spec_table({"SERVE_WORKERS": "3"})[GUNICORN]
    command = [part.format(port=8123) for part in gunicorn.command]
    assert command[:4] == ["/venv/bin/python", "-m", "bench.launch", "gunicorn"]
    assert command[command.index("--worker-class") + 1] == "sync"
    assert command[command.index("--workers") + 1] == "3"
    assert command[command.index("--bind") + 1] == "127.0.0.1:8123"
    assert command[-1] == "serving.app:create_app()"
    assert gunicorn.fresh_dir_variable == "PROMETHEUS_MULTIPROC_DIR"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"SERVE_WORKERS": "3"}, 3),
        ({"SERVE_WORKERS": "0"}, len(os.sched_getaffinity(0))),
        ({}, len(os.sched_getaffinity(0))),
    ],
)
def test_worker_count_follows_serve_workers_like_the_service(overrides, expected):
    assert worker_count(overrides) == expected


def test_a_variant_is_production_with_more_settings_and_says_which():
    spec = variant_spec(
        "/venv/bin/python",
        Path("/m/model.onnx"),
        b"{}",
        {"SERVE_THREADS": "32"},
        [("SERVE_THREADS", "8"), ("SERVE_WORKERS", "2")],
    )
    assert spec.name == f"{PRODUCTION} (SERVE_THREADS=8, SERVE_WORKERS=2)"
    assert spec.command == ["/venv/bin/python", "-m", "serving"]
    assert spec.env["SERVE_THREADS"] == "8"
    assert spec.env["SERVE_WORKERS"] == "2"


def test_settings_on_the_command_line_are_name_value_pairs():
    assert env_setting("SERVE_THREADS=8") == ("SERVE_THREADS", "8")
    assert env_setting("A=b=c") == ("A", "b=c")
    assert env_settings("SERVE_THREADS=8,SERVE_WORKERS=1") == (
        ("SERVE_THREADS", "8"),
        ("SERVE_WORKERS", "1"),
    )
    for bad in ("SERVE_THREADS", "=8"):
        with pytest.raises(argparse.ArgumentTypeError):
            env_setting(bad)


@pytest.mark.parametrize(
    ("command", "helper"),
    [
        ("python -B -c from multiprocessing.resource_tracker import main;main(14)", 1),
        (
            "python -B -c from multiprocessing.spawn import spawn_main; "
            "spawn_main(tracker_fd=15, pipe_handle=17) --multiprocessing-fork",
            0,
        ),
        ("python -m gunicorn --worker-class sync serving.app:create_app()", 0),
    ],
)
def test_multiprocessing_helpers_are_not_workers(command, helper):
    assert is_helper(command) is bool(helper)


# One run's measurements: server, path, connections, rows, req/s, p99 ms.
RUNS = [
    (PRODUCTION, "/predict", 8, 1, 4000, 3.0),
    (PRODUCTION, "/predict", 32, 1, 4200, 12.0),
    (PRODUCTION, "/predict/batch", 1, 1024, 120, 10.0),
    (GUNICORN, "/predict", 8, 1, 2500, 5.0),
    (GUNICORN, "/predict", 32, 1, 2600, 15.0),
    (NOOP, NOOP_PATH, 8, 1, 5000, 2.0),
    (NOOP, NOOP_PATH, 32, 1, 6000, 9.0),
    (TUNED, "/predict", 8, 1, 3000, 4.0),
    (TUNED, "/predict", 32, 1, 3000, 60.0),
    (TYPICAL, "/predict", 8, 1, 800, 20.0),
]
# Cold start in seconds and PSS per worker in MiB.
FOOTPRINTS = {
    PRODUCTION: (0.9, 60),
    GUNICORN: (0.6, 50),
    NOOP: (0.9, 60),
    TUNED: (2.0, 190),
    TYPICAL: (1.8, 200),
}
FLOORS = {"service_decode_rows_per_s": 200_000.0}
SIZES = {"serve": {"package_bytes": 100}, "train": {"package_bytes": 1000}}


def measured(servers: set[str]) -> dict[str, ServerResult]:
    """Build the results of `servers` from RUNS and FOOTPRINTS (10-second runs)."""
    results = {}
    for name in servers:
        cold_start_s, pss_mib = FOOTPRINTS[name]
        pss_kib = [pss_mib * 1024] * 2
        results[name] = ServerResult(name, [cold_start_s], worker_pss_kib=pss_kib)
    for name, path, connections, rows, rps, p99_ms in RUNS:
        if name not in servers:
            continue
        body = "predict" if rows == 1 else f"batch-{rows}"
        load = LoadResult(int(rps * 10), 10.0, p99_ms / 2, p99_ms, p99_ms, 0, rows)
        run = LoadRun(path, body, connections, rows)
        results[name].loads[run] = (load, CpuShare(100.0, 10.0, 0.0))
    return results


def test_targets_are_ratios_of_production_to_each_other_server():
    checked = {
        target.name: (target.ratio, target.met)
        for target in check_targets(measured(set(FOOTPRINTS)), FLOORS, SIZES, 1024)
    }
    assert checked == {
        f"/predict req/s at c=8 vs {GUNICORN}": (1.6, True),
        f"/predict req/s at c=8 vs {TUNED}": (pytest.approx(4 / 3), False),
        f"/predict req/s at c=8 vs {TYPICAL}": (5.0, True),
        f"/predict p99 at c=32 vs {GUNICORN}": (0.8, True),
        f"/predict p99 at c=32 vs {TUNED}": (0.2, True),
        f"cold start vs {GUNICORN}": (pytest.approx(1.5), False),
        f"cold start vs {TYPICAL}": (0.5, True),
        f"PSS per worker vs {GUNICORN}": (1.2, True),
        f"PSS per worker vs {TYPICAL}": (0.3, True),
        "/predict req/s at c=8 vs no-op route (stack limit)": (0.8, True),
        "/predict req/s at c=32 vs no-op route (stack limit)": (0.7, False),
        "/predict/batch rows/s (1024 rows, c=1) vs decode floor": (
            pytest.approx(120 * 1024 / 200_000),
            True,
        ),
        "serve env size vs train env size (packages)": (0.1, True),
    }


def with_worker_cpu(
    results: dict[str, ServerResult], name: str, path: str, workers: tuple
) -> None:
    """Set how the CPU of `name`'s runs of `path` spread over its workers."""
    for run, (load, _) in results[name].loads.items():
        if run.path == path:
            results[name].loads[run] = (load, CpuShare(100.0, 10.0, 0.0, workers))


def test_a_server_whose_connections_landed_on_one_worker_is_not_compared():
    results = measured(set(FOOTPRINTS))
    with_worker_cpu(results, TUNED, "/predict", (124.0, 0.0))
    with_worker_cpu(results, PRODUCTION, "/predict", (92.0, 84.0))
    checked = {t.name: t for t in check_targets(results, FLOORS, SIZES, 1024)}
    rate = checked[f"/predict req/s at c=8 vs {TUNED}"]
    assert rate.met is None and rate.ratio == pytest.approx(4 / 3)
    assert rate.row()[-1] == (
        f"not comparable: {TUNED}: connections on one worker (CPU by worker)"
    )
    assert checked[f"/predict req/s at c=8 vs {GUNICORN}"].met is True
    assert checked[f"/predict p99 at c=32 vs {TUNED}"].met is None  # lopsided too
    assert checked[f"cold start vs {TYPICAL}"].met is True  # not a load run


def test_the_stack_limit_is_not_compared_when_the_noop_server_ran_lopsided():
    results = measured(set(FOOTPRINTS))
    with_worker_cpu(results, NOOP, NOOP_PATH, (110.0, 20.0))
    (c8,) = [
        t
        for t in check_targets(results, FLOORS, SIZES, 1024)
        if t.name.startswith("/predict req/s at c=8 vs no-op")
    ]
    assert c8.met is None and NOOP in c8.incomparable
    with_worker_cpu(results, NOOP, NOOP_PATH, (110.0, 58.0))  # uneven, not lopsided
    (c8,) = [
        t
        for t in check_targets(results, FLOORS, SIZES, 1024)
        if t.name.startswith("/predict req/s at c=8 vs no-op")
    ]
    assert c8.met is True


def test_targets_of_servers_not_run_are_not_measured():
    production = measured({PRODUCTION})[PRODUCTION]
    production.loads = {}
    checked = check_targets({PRODUCTION: production}, FLOORS, SIZES, 1024)
    assert all(target.met is None for target in checked[:-1])
    assert checked[-1].met is True  # the environment sizes need no server


def test_footprint_table_shows_workers_and_the_whole_tree():
    result = ServerResult(PRODUCTION, [0.5, 0.7, 0.6], worker_pss_kib=[2048, 4096])
    result.total_pss_kib = 10 * 1024
    row = footprint_table([result]).splitlines()[-1]
    assert row == (
        f"| {PRODUCTION} | 0.60 s | 0.50, 0.70, 0.60 | 2 | 3.0 MiB | 10.0 MiB |"
    )


def test_the_noop_route_answers_like_predict_and_shares_its_errors(
    onnx_path, monkeypatch
):
    from bench.noop_app import NOOP_RESPONSE, create_noop_app

    monkeypatch.setenv("SERVE_MODEL_PATH", str(onnx_path))
    client = create_noop_app().test_client()
    body = {"features": [0] * 64}
    assert client.post(NOOP_PATH, json=body).get_json() == NOOP_RESPONSE
    predicted = client.post("/predict", json=body).get_json()
    assert set(predicted) == set(NOOP_RESPONSE)
    broken = client.post(
        NOOP_PATH, data=b"{", headers={"Content-Type": "application/json"}
    )
    assert broken.status_code == 400
    assert broken.get_json()["error"]["code"] == "invalid_json"


def test_every_body_the_bench_sends_is_answered_200_by_its_route(client, tmp_path):
    """The bodies (and post.lua's extra headers) are real requests, not guesses."""
    bodies = write_bodies(tmp_path)
    for run in production_runs():
        path = bodies[run.body]
        headers = body_headers(path)
        response = client.post(run.path, data=path.read_bytes(), headers=headers)
        assert response.status_code == 200, (run.label, response.data[:200])
        if run.encoding == "binary":
            length = int(response.headers["Inference-Header-Content-Length"])
            assert len(response.data) - length == run.rows * 10 * 4


def test_v2_runs_cover_json_and_binary_at_one_and_64_rows():
    labels = {run.label for run in production_runs() if run.path == V2_INFER_PATH}
    assert labels == {
        f"{V2_INFER_PATH} (json)",
        f"{V2_INFER_PATH} (binary)",
        f"{V2_INFER_PATH} (64 rows, json)",
        f"{V2_INFER_PATH} (64 rows, binary)",
    }
