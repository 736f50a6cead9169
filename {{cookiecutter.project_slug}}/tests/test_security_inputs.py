"""Bad inputs are refused with one line: monitor files and logs, raw data changed after
collect, a database URL kept out of the configuration."""

import json
import logging
import shutil
import sqlite3
from datetime import datetime, timedelta, timezone

import pytest
from conftest import edit_yaml, run_cli, settings_for
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }} import data, monitor
from {{ cookiecutter.package_name }}.api import create_app
from {{ cookiecutter.package_name }}.config import load_problem
from {{ cookiecutter.package_name }}.errors import ConfigError
from {{ cookiecutter.package_name }}.problem_type import PROBLEM_TYPE

JUNK = bytes(range(256)) * 4  # not text, not Parquet; holds newlines
NOT_OBJECTS = {
    "time": "2026-01-01T00:00:00+00:00",
    "request": {"instances": [1, 2], "history": [1, 2]},
    "response": {"predictions": [1, 2], "forecast": [1, 2], "model_version": "v"},
}
BAD_INPUTS = [
    ("--data", "missing.csv", None),
    ("--data", "folder", "dir"),
    ("--data", "empty.csv", b""),
    ("--data", "binary.csv", JUNK),
    ("--data", "corrupt.parquet", JUNK),
    ("--data", "empty.parquet", b""),
    ("--data", "other_columns.csv", b"a,b\n1,2\n"),
    ("--log", "missing.jsonl", None),
    ("--log", "folder", "dir"),
    ("--log", "empty.jsonl", b""),
    ("--log", "binary.jsonl", JUNK),
    ("--log", "not_json.jsonl", b"time=2026-01-01 predicted 1\n"),
    ("--log", "not_objects.jsonl", b'[1, 2]\n"text"\n3\n'),
    ("--log", "parts_not_objects.jsonl", json.dumps(NOT_OBJECTS).encode() + b"\n"),
]


@pytest.fixture
def root(trained_project, tmp_path):
    """A project root with the trained project's configs and models."""
    shutil.copytree(trained_project.root / "configs", tmp_path / "configs")
    shutil.copytree(trained_project.models, tmp_path / "models")
    return tmp_path


@pytest.mark.parametrize(("option", "name", "content"), BAD_INPUTS)
def test_bad_monitor_input_is_one_line_and_exit_2(
    root, monkeypatch, capsys, caplog, option, name, content
):
    """Not the drift code 1, and no traceback: a missing, empty, binary or corrupt file, other
    columns, or log lines that are no prediction records."""
    path = root / name
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)

    with caplog.at_level(logging.WARNING):
        code = run_cli(monkeypatch, "monitor", "--root", str(root), option, name)

    assert code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {path}")
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def logged_lines(trained_project, tmp_path, requests: int) -> list[dict]:
    """Records of the service's own log, from the OpenAPI example sent `requests` times."""
    settings = settings_for(trained_project, tmp_path)
    with TestClient(create_app(settings)) as client:
        schemas = client.get("/openapi.json").json()["components"]["schemas"]
        body = schemas["PredictRequest"]["examples"][0]
        for _ in range(requests):
            assert client.post("/v1/predict", json=body).status_code == 200
    lines = settings.prediction_log_path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def test_the_monitor_reads_rotated_logs_oldest_first(trained_project, tmp_path):
    """predictions.jsonl.2, .1, then predictions.jsonl, so --last and --since span a
    rotation."""
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    log = tmp_path / "logs" / "predictions.jsonl"
    log.parent.mkdir()
    records = logged_lines(trained_project, tmp_path, requests=3)
    for hours, (record, name) in enumerate(zip(records, [".2", ".1", ""], strict=True)):
        record["time"] = (start + timedelta(hours=hours)).isoformat()
        log.with_name(log.name + name).write_text(json.dumps(record) + "\n", encoding="utf-8")

    times = [r["time"] - start for r in monitor.read_log(log)]
    assert times == [timedelta(hours=0), timedelta(hours=1), timedelta(hours=2)]
    assert [r["time"] - start for r in monitor.read_log(log, last=2)] == times[1:]
    since = start + timedelta(minutes=30)
    assert [r["time"] - start for r in monitor.read_log(log, since=since)] == times[1:]


def test_validate_refuses_a_raw_file_changed_after_collect(project, problem, monkeypatch, capsys):
    data.collect(problem, project.raw, project.root)
    raw = data.read_raw(project.raw)
    raw.iloc[:1].to_parquet(project.raw / data.RAW_FILE, index=False)  # edited by hand

    code = run_cli(monkeypatch, "validate", "--root", str(project.root))

    assert code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {project.raw / data.RAW_FILE} changed after `collect`")
    assert "collect --force" in line
    assert run_cli(monkeypatch, "prepare", "--root", str(project.root)) == 2


def test_collect_force_takes_a_new_snapshot_after_a_changed_raw_file(project, problem):
    data.collect(problem, project.raw, project.root)
    raw = data.read_raw(project.raw)
    raw.iloc[:1].to_parquet(project.raw / data.RAW_FILE, index=False)

    data.collect(problem, project.raw, project.root, force=True)

    assert len(data.read_raw(project.raw)) == len(raw)
    assert len(list((project.raw / "archive").glob("dataset-*.parquet"))) == 1


def use_database(project, problem, url_source: dict) -> None:
    """The project's sample in a SQLite file, as source a query on it."""
    sample = PROBLEM_TYPE.samples[problem.source.name]()
    with sqlite3.connect(project.root / "shop.db") as connection:
        sample.to_sql("observations", connection, index=False)
    source = {"kind": "sql", **url_source, "query": "SELECT * FROM observations"}
    edit_yaml(project.problem, source=source)


def test_a_sql_url_read_from_the_environment_is_used(project, problem, monkeypatch):
    use_database(project, problem, {"url_env": "SHOP_DATABASE_URL"})
    monkeypatch.setenv("SHOP_DATABASE_URL", f"sqlite:///{project.root / 'shop.db'}")

    manifest = data.collect(load_problem(project.problem), project.raw, project.root)

    assert manifest["rows"] == len(PROBLEM_TYPE.samples[problem.source.name]())
    assert manifest["source"]["url_env"] == "SHOP_DATABASE_URL"
    assert "shop.db" not in json.dumps(manifest["source"])  # the URL itself is not recorded


def test_a_missing_sql_url_variable_is_one_clear_error(project, problem, monkeypatch):
    use_database(project, problem, {"url_env": "SHOP_DATABASE_URL"})
    monkeypatch.delenv("SHOP_DATABASE_URL", raising=False)

    with pytest.raises(ConfigError) as error:
        data.collect(load_problem(project.problem), project.raw, project.root)
    assert str(error.value) == (
        "problem.yaml: source.url_env: the environment variable SHOP_DATABASE_URL is not set; "
        "set it to the database URL"
    )


@pytest.mark.parametrize(
    "url_source",
    [{}, {"url": "sqlite:///shop.db", "url_env": "SHOP_DATABASE_URL"}],
    ids=["neither", "both"],
)
def test_a_sql_source_takes_exactly_one_of_url_and_url_env(project, problem, url_source):
    use_database(project, problem, url_source)

    with pytest.raises(ConfigError, match="set exactly one of url and url_env"):
        load_problem(project.problem)
