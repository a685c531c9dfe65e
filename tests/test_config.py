import os

import pytest

from serving.config import (
    ConfigError,
    ServeConfig,
    cpu_quota_cores,
    default_workers,
)


def test_defaults_bind_loopback_and_point_at_artifacts():
    config = ServeConfig.from_env({})
    assert config.bind == "127.0.0.1:8000"
    assert config.model_path == "artifacts/model.onnx"
    assert config.worker_count >= 1


def test_environment_values_arrive(monkeypatch):
    monkeypatch.setenv("HOST", "0.0.0.0")
    monkeypatch.setenv("PORT", "9123")
    monkeypatch.setenv("SERVE_MODEL_PATH", "/models/digits.onnx")
    monkeypatch.setenv("SERVE_WORKERS", "3")
    monkeypatch.setenv("SERVE_THREADS", "4")
    config = ServeConfig.from_env()
    assert config.bind == "0.0.0.0:9123"
    assert config.model_path == "/models/digits.onnx"
    assert (config.worker_count, config.threads) == (3, 4)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("PORT", "http", "PORT='http' is not an integer"),
        ("PORT", "70000", "PORT=70000 must be between 1 and 65535"),
        ("PORT", "0", "PORT=0 must be between 1 and 65535"),
        ("SERVE_LOG_LEVEL", "loud", "SERVE_LOG_LEVEL='loud' is not one of debug"),
        ("SERVE_THREADS", "0", "SERVE_THREADS=0 must be between 1 and 1024"),
        ("SERVE_ACCESS_LOG", "maybe", "SERVE_ACCESS_LOG='maybe' is not a boolean"),
    ],
)
def test_bad_values_name_the_variable(name, value, message):
    with pytest.raises(ConfigError, match=message):
        ServeConfig.from_env({name: value})


@pytest.mark.parametrize(
    ("raw", "expected"), [("0", False), ("off", False), ("TRUE", True)]
)
def test_access_log_switch(raw, expected):
    assert ServeConfig.from_env({"SERVE_ACCESS_LOG": raw}).access_log is expected


def test_limits_arrive(monkeypatch):
    monkeypatch.setenv("SERVE_MAX_BATCH_ROWS", "16")
    monkeypatch.setenv("SERVE_MAX_CONTENT_LENGTH", "65536")
    config = ServeConfig.from_env()
    assert (config.max_batch_rows, config.max_content_length) == (16, 65536)


def test_every_setting_has_its_variable(monkeypatch):
    values = {
        "SERVE_ORT_THREADS": "2",
        "SERVE_TIMEOUT": "45",
        "SERVE_GRACEFUL_TIMEOUT": "5",
        "SERVE_LOG_LEVEL": "WARNING",
        "PROMETHEUS_MULTIPROC_DIR": "/tmp/metrics",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    config = ServeConfig.from_env()
    assert (config.ort_threads, config.timeout, config.graceful_timeout) == (2, 45, 5)
    assert config.log_level == "warning" and config.metrics_dir == "/tmp/metrics"


def test_readme_settings_table_is_generated_from_the_declarations():
    from serving.config import settings_table
    from tests.conftest import REPO_ROOT

    readme = (REPO_ROOT / "README.md").read_text()
    start = readme.index("<!-- settings-table:start -->\n") + len(
        "<!-- settings-table:start -->\n"
    )
    end = readme.index("\n<!-- settings-table:end -->")
    assert readme[start:end] == settings_table()


def test_every_declared_setting_is_read_from_its_variable():
    from serving.config import declared_settings

    for field in declared_settings():
        default = field.default
        if isinstance(default, bool):
            raw, expected = str(not default).lower(), not default
        elif isinstance(default, int):
            raw, expected = str(default + 1), default + 1
        elif field.name == "log_level":
            raw, expected = "ERROR", "error"
        else:
            raw, expected = "/some/where", "/some/where"
        config = ServeConfig.from_env({field.metadata["env"]: raw})
        assert getattr(config, field.name) == expected, field.name
        assert field.metadata["doc"], field.name


def test_empty_variables_mean_unset():
    assert ServeConfig.from_env({"PORT": "", "SERVE_WORKERS": ""}) == ServeConfig()


def test_several_bad_values_are_all_named():
    with pytest.raises(ConfigError) as caught:
        ServeConfig.from_env({"PORT": "x", "SERVE_THREADS": "0"})
    assert "PORT='x'" in str(caught.value) and "SERVE_THREADS=0" in str(caught.value)


@pytest.mark.parametrize(
    ("cpu_max", "cores"),
    [
        ("200000 100000\n", 2),  # docker --cpus 2, a Kubernetes limit of 2
        ("150000 100000\n", 2),  # 1.5 CPUs: a second worker uses the half
        ("50000 100000\n", 1),
        ("max 100000\n", None),  # no quota
        ("garbage\n", None),
    ],
)
def test_a_cgroup_v2_cpu_quota_is_read_in_whole_cores(tmp_path, cpu_max, cores):
    (tmp_path / "cpu.max").write_text(cpu_max)
    assert cpu_quota_cores(tmp_path) == cores


@pytest.mark.parametrize("controller", ["cpu", "cpu,cpuacct"])
@pytest.mark.parametrize(("quota", "cores"), [("300000", 3), ("-1", None)])
def test_a_cgroup_v1_cpu_quota_is_read_too(tmp_path, controller, quota, cores):
    directory = tmp_path / controller
    directory.mkdir()
    (directory / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (directory / "cpu.cfs_period_us").write_text("100000\n")
    assert cpu_quota_cores(tmp_path) == cores


def test_default_workers_are_the_usable_cores_capped_by_the_quota(tmp_path):
    usable = len(os.sched_getaffinity(0))
    quota = tmp_path / "cpu.max"
    quota.write_text("100000 100000\n")
    assert default_workers(tmp_path) == 1
    quota.write_text(f"{(usable + 4) * 100000} 100000\n")
    assert default_workers(tmp_path) == usable  # a quota above the cores: no change
    assert default_workers(tmp_path / "absent") == usable
