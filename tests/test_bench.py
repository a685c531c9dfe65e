"""The benchmark's pure helpers: parsing wrk and /proc, ratios, formatting.

No timing here: the benchmark itself runs with `make bench`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.envsize import canonical, requirement_names
from bench.load import LoadError, LoadResult, parse_wrk_summary, wrk_command
from bench.report import format_rate, markdown_table
from bench.system import CpuShare, CpuSnapshot, cpu_share, parse_smaps_rollup
from bench.targets import Target, ratio

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


def test_cpu_share_is_in_percent_of_one_core_and_the_rest_is_other():
    before = CpuSnapshot(100.0, 200.0, 10.0, 1.0, 0.5)
    # 10 s of wall time on 2 cores = 20 CPU seconds; 15 of them busy.
    after = CpuSnapshot(115.0, 220.0, 18.0, 3.0, 1.0)
    assert cpu_share(before, after, cores=2) == CpuShare(
        server=80.0, load_generator=20.0, other=45.0
    )


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
