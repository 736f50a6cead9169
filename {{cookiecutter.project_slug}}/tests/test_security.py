"""Every security promise of this project, one test each, so this file reads as the list of
guarantees: model files (only signed bundles inside models/, by version name), the service
(keys, strict and bounded input, content types, body limits, disconnects, a bounded prediction
log, a safe runbook page) and inputs (monitor files and logs, raw data, database URLs)."""

import json
import logging
import os
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import another_version, edit_yaml, run_cli, settings_for
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }} import bundle, data, drift_report, monitor, registry
from {{ cookiecutter.package_name }}.api import create_app
from {{ cookiecutter.package_name }}.config import Paths, load_problem
from {{ cookiecutter.package_name }}.errors import ConfigError, DataError
from {{ cookiecutter.package_name }}.problem_type import PROBLEM_TYPE
from {{ cookiecutter.package_name }}.service.routes import predict
from {{ cookiecutter.package_name }}.service.settings import from_environment
from {{ cookiecutter.package_name }}.service.telemetry import PredictionLog

# Model files: only signed bundles inside models/ are served, by version name.


@pytest.fixture
def models(trained_project, tmp_path) -> Path:
    """A copy of the trained project's models/, with its promoted bundle, to change freely."""
    shutil.copytree(trained_project.models, tmp_path / "models")
    return tmp_path / "models"


def serve(models: Path, **changes) -> TestClient:
    """A test client of the service for `models`; the watcher is off unless asked for."""
    changes = {"reload_interval": 0, **changes}
    settings = settings_for(Paths(models.parent), models.parent, **changes)
    return TestClient(create_app(settings))


def forge(bundle_dir: Path) -> None:
    """The forgery of the issue: the baseline as the model, every hash recomputed."""
    shutil.copy(bundle_dir / bundle.BASELINE, bundle_dir / bundle.MODEL)
    rehash(bundle_dir, json.loads((bundle_dir / bundle.METADATA).read_text()))


def rehash(bundle_dir: Path, metadata: dict) -> None:
    """Write `metadata` with the hashes of the files as they are now, as a forger would."""
    metadata["files"] = {name: bundle.sha256_file(bundle_dir / name) for name in metadata["files"]}
    metadata["content_sha256"] = bundle._content_hash(metadata["files"], metadata)
    bundle.write_json(bundle_dir / bundle.METADATA, metadata)


def test_promote_refuses_a_path_outside_models(models, tmp_path, monkeypatch, capsys):
    """Absolute paths, `../` paths, links out of models/ and folders that are no bundle."""
    version = bundle.read_pointer(models, "current")
    outside = tmp_path / "outside"
    shutil.copytree(models / version, outside / version)  # a genuine bundle, in the wrong place
    (models / "linked").symlink_to(outside / version)
    (models / "empty").mkdir()
    for name in (str(outside / version), f"../outside/{version}", "linked", "empty", ".", ".."):
        code = run_cli(monkeypatch, "models", "promote", name, "--force", "--root", str(tmp_path))
        lines = capsys.readouterr().err.strip().splitlines()
        assert code == 2, name
        assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert bundle.read_pointer(models, "current") == version


def test_a_pointer_outside_models_is_refused_by_the_service(models, tmp_path):
    """Not ready when the pointer names `../x` at start-up; 409 when it moves there later."""
    version = bundle.read_pointer(models, "current")
    shutil.copytree(models / version, tmp_path / "x")
    with serve(models) as client:
        (models / "current").write_text("../x\n")
        reload = client.post("/v1/reload")
        assert reload.status_code == 409
        assert "not a version name" in reload.json()["detail"]
        assert client.get("/ready").json()["model_version"] == version
    with serve(models) as client:
        ready = client.get("/ready")
    assert ready.status_code == 503
    assert "not a version name" in ready.json()["reason"]


def test_a_forged_bundle_is_refused_at_load_and_at_promote(models, tmp_path, monkeypatch, capsys):
    version = bundle.read_pointer(models, "current")
    forge(models / version)
    bundle.verify_files(models / version)  # every hash matches: only the signature tells
    with pytest.raises(bundle.BundleError, match="matches no signing key"):
        bundle.load(models / version)
    with serve(models) as client:
        ready = client.get("/ready")
    assert ready.status_code == 503
    assert version in ready.json()["reason"] and "signature" in ready.json()["reason"]
    code = run_cli(monkeypatch, "models", "promote", version, "--root", str(tmp_path))
    assert code == 2
    assert f"models sign {version} --trust" in capsys.readouterr().err


def test_a_bundle_copied_under_another_name_is_refused(models):
    version = bundle.read_pointer(models, "current")
    shutil.copytree(models / version, models / "20990101-000000-copied")
    with pytest.raises(bundle.BundleError, match="served only under its own name"):
        registry.promote(models, "20990101-000000-copied", reason="test", force=True)
    assert bundle.read_pointer(models, "current") == version


def test_reload_reports_a_change_exactly_when_the_served_content_changes(models, tmp_path):
    """The pointer names the same version throughout: reload compares content hashes."""
    version = bundle.read_pointer(models, "current")
    genuine = tmp_path / "genuine"
    shutil.copytree(models / version, genuine)

    def restore() -> None:
        shutil.rmtree(models / version)
        shutil.copytree(genuine, models / version)

    with serve(models) as client:
        digest = client.get("/ready").json()["content_sha256"]
        forge(models / version)  # without the key: refused, the genuine model stays
        assert client.post("/v1/reload").status_code == 409
        restore()
        assert client.post("/v1/reload").json() == {"model_version": version, "changed": False}

        rebuilt = {**bundle.read_metadata(models / version), "note": "rebuilt"}
        rehash(models / version, rebuilt)
        bundle.sign(models / version, rebuilt)  # other content under the name, by a key holder
        assert client.post("/v1/reload").json()["changed"] is True
        other = client.get("/ready").json()["content_sha256"]
        assert other != digest
        restore()
        assert client.post("/v1/reload").json() == {"model_version": version, "changed": True}
        assert client.get("/ready").json()["content_sha256"] == digest
        assert client.post("/v1/reload").json()["changed"] is False


def test_a_bundle_signed_with_another_key_is_refused(models, monkeypatch):
    monkeypatch.setenv(bundle.KEY_ENV, "another key, not the one that signed")
    with serve(models) as client:
        ready = client.get("/ready")
    assert ready.status_code == 503
    assert "matches no signing key" in ready.json()["reason"]


def test_key_rotation_accepts_the_previous_key_until_models_sign_moves_to_the_new_one(
    models, tmp_path, monkeypatch
):
    version = bundle.read_pointer(models, "current")
    old = bundle.signing_key(models).decode()
    monkeypatch.setenv(bundle.KEY_ENV, "the new signing key, after rotation")
    with pytest.raises(bundle.BundleError, match="matches no signing key"):
        bundle.verify(models / version)
    monkeypatch.setenv(bundle.PREVIOUS_KEY_ENV, old)
    bundle.verify(models / version)

    assert run_cli(monkeypatch, "models", "sign", "--all", "--root", str(tmp_path)) == 0
    signed = registry.history(models)[-1]
    assert (signed["event"], signed["version"], signed["trusted"]) == ("signed", version, False)
    monkeypatch.delenv(bundle.PREVIOUS_KEY_ENV)
    bundle.verify(models / version)
    assert registry.evaluation(models, version) is not None  # signed again with the bundle
    monkeypatch.setenv(bundle.KEY_ENV, old)
    with pytest.raises(bundle.BundleError, match="matches no signing key"):
        bundle.verify(models / version)


def test_models_sign_needs_trust_for_an_unsigned_bundle(models, tmp_path, monkeypatch, capsys):
    """Bundles made before signing are signed only with --trust, and the log says so."""
    version = bundle.read_pointer(models, "current")
    (models / version / bundle.SIGNATURE).unlink()
    with pytest.raises(bundle.BundleError, match="is not signed"):
        bundle.verify(models / version)
    assert run_cli(monkeypatch, "models", "sign", version, "--root", str(tmp_path)) == 2
    assert "is not signed" in capsys.readouterr().err
    assert run_cli(monkeypatch, "models", "sign", version, "--trust", "--root", str(tmp_path)) == 0
    bundle.verify(models / version)
    assert registry.history(models)[-1]["trusted"] is True


def test_the_first_save_creates_a_private_signing_key(tmp_path, monkeypatch, caplog):
    """Without MODEL_SIGNING_KEY: a key file next to models/, readable by its owner only."""
    monkeypatch.delenv(bundle.KEY_ENV)
    models = tmp_path / "models"
    with caplog.at_level(logging.WARNING):
        first = bundle.save(models, {"weights": [1.0]}, {"weights": [0.0]}, {}, {})
    key_file = tmp_path / bundle.KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert bundle.KEY_ENV in caplog.text
    key = key_file.read_text()
    second = bundle.save(models, {"weights": [2.0]}, {"weights": [0.0]}, {}, {})
    assert key_file.read_text() == key
    for version in (first, second):
        bundle.verify(models / version)


def test_the_watcher_survives_an_unreadable_pointer(models, monkeypatch, caplog):
    """Invalid UTF-8 in models/current is logged once; the next promotion is followed."""
    version = bundle.read_pointer(models, "current")
    new = another_version(models, version)
    reads = []
    read_pointer = bundle.read_pointer
    monkeypatch.setattr(
        bundle, "read_pointer", lambda *args: reads.append(args) or read_pointer(*args)
    )

    def wait_for(condition, what: str) -> None:
        deadline = time.monotonic() + 10
        while not condition():
            assert time.monotonic() < deadline, f"the watcher did not {what}"
            time.sleep(0.02)

    with serve(models, reload_interval=0.05) as client:
        (models / "current").write_bytes(b"\xff\xfe\xfd\n")
        wait_for(lambda: "is not text" in caplog.text, "log the bad pointer")
        ticks = len(reads)
        wait_for(lambda: len(reads) >= ticks + 3, "keep watching")
        bundle.set_pointer(models, "current", new)
        wait_for(lambda: client.get("/ready").json()["model_version"] == new, "follow")
    assert caplog.text.count("is not text") == 1


def test_ready_is_503_once_the_served_bundle_is_deleted(models):
    version = bundle.read_pointer(models, "current")
    with serve(models) as client:
        assert client.get("/ready").status_code == 200
        shutil.rmtree(models / version)
        ready = client.get("/ready")
    assert ready.status_code == 503
    assert version in ready.json()["reason"] and "deleted" in ready.json()["reason"]


def test_load_deserializes_the_very_bytes_it_verified(models, monkeypatch):
    """Each file is read once: a model swapped right after its check is not what loads."""
    bundle_dir = models / bundle.read_pointer(models, "current")
    genuine = (bundle_dir / bundle.MODEL).read_bytes()
    reads, deserialized = [], []
    read, loads = bundle._read, bundle.sio.loads

    def read_then_swap(path, *args, **kwargs):
        reads.append(path.name)
        data = read(path, *args, **kwargs)
        if path.name == bundle.MODEL:
            shutil.copy(bundle_dir / bundle.BASELINE, path)
        return data

    def recorded(data, **kwargs):
        deserialized.append(data)
        return loads(data, **kwargs)

    monkeypatch.setattr(bundle, "_read", read_then_swap)
    monkeypatch.setattr(bundle.sio, "loads", recorded)
    loaded = bundle.load(bundle_dir)
    assert sorted(reads) == sorted({*loaded.metadata["files"], bundle.METADATA, bundle.SIGNATURE})
    assert deserialized[0] == genuine
    with pytest.raises(bundle.BundleError, match="does not match its recorded sha256"):
        bundle.load(bundle_dir)


def test_metadata_naming_other_files_or_not_an_object_is_refused_before_reading(models):
    """Unsigned metadata names no file to read: not /dev/zero, not a pipe; the service
    starts and says why it is not ready."""
    bundle_dir = models / bundle.read_pointer(models, "current")
    path = bundle_dir / bundle.METADATA
    metadata = json.loads(path.read_text())
    foreign = {**metadata, "files": {**metadata["files"], "/dev/zero": "0" * 64}}
    foreign["content_sha256"] = bundle._content_hash(foreign["files"], foreign)
    for forged, reason in ((foreign, "the files in"), ([metadata], "not a JSON object")):
        path.write_text(json.dumps(forged))
        with pytest.raises(bundle.BundleError, match=reason):
            bundle.load(bundle_dir)
    with serve(models) as client:
        ready = client.get("/ready")
    assert ready.status_code == 503 and "not a JSON object" in ready.json()["reason"]

    path.write_text(json.dumps(metadata))
    (bundle_dir / bundle.REFERENCE).unlink()
    os.mkfifo(bundle_dir / bundle.REFERENCE)
    with pytest.raises(bundle.BundleError, match="not a regular file"):
        bundle.load(bundle_dir)


def test_an_evaluation_not_signed_for_its_bundle_does_not_pass_the_gate(
    models, tmp_path, monkeypatch, capsys, caplog
):
    """Edited, unsigned, or copied from another bundle: it counts as no evaluation."""
    version = bundle.read_pointer(models, "current")
    assert registry.evaluation(models, version)["gate"]["passed"] is True
    new = another_version(models, version)
    for name in (bundle.EVALUATION, bundle.EVALUATION_SIGNATURE):
        shutil.copy(models / version / name, models / new / name)
    report = json.loads((models / version / bundle.EVALUATION).read_text())
    (models / version / bundle.EVALUATION).write_text(json.dumps({**report, "note": "edited"}))
    with caplog.at_level(logging.WARNING):
        assert registry.evaluation(models, version) is None
        (models / new / bundle.EVALUATION).write_text(json.dumps({**report, "version": new}))
        assert registry.evaluation(models, new) is None
        assert "is not signed for this bundle" in caplog.text
    code = run_cli(monkeypatch, "models", "promote", new, "--root", str(tmp_path))
    assert code == 2 and "has not passed the evaluation gate" in capsys.readouterr().err
    with serve(models) as client:
        assert client.get("/ready").status_code == 200
        assert client.get("/v1/model").json()["metrics"] is None


def test_a_key_file_others_may_write_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv(bundle.KEY_ENV)
    models = tmp_path / "models"
    version = bundle.save(models, {"weights": [1.0]}, {"weights": [0.0]}, {}, {})
    (tmp_path / bundle.KEY_FILE).chmod(0o620)
    with pytest.raises(bundle.BundleError, match="writable by others") as error:
        bundle.verify(models / version)
    assert len(str(error.value).splitlines()) == 1


# The service: keys, strict and bounded input, content types, body limits, disconnects,
# the prediction log, the runbook page.


KEY = "a-key-of-16-characters-or-more"
UVICORN = [
    sys.executable,
    "-m",
    "uvicorn",
    "{{ cookiecutter.package_name }}.api:create_app",
    "--factory",
    "--host",
    "127.0.0.1",
]


@pytest.fixture(scope="module")
def trained(request):
    """A trained project with a number, a category and a date (rows), or the series one."""
    name = "trained_project" if PROBLEM_TYPE.name == "forecasting" else "mixed_project"
    return request.getfixturevalue(name)


@pytest.fixture(scope="module")
def client(trained, tmp_path_factory):
    """A client of the service, shared by the tests that only send it requests."""
    settings = settings_for(trained, tmp_path_factory.mktemp("client"))
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture(scope="module")
def example(client) -> dict:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    return schemas["PredictRequest"]["examples"][0]


def leaves(value, path=()):
    """(path, value) of every number and string in a JSON value, the first of each field
    only (list positions after the first are skipped)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, (*path, key))
    elif isinstance(value, list):
        if value:
            yield from leaves(value[0], (*path, 0))
    elif isinstance(value, str | int | float) and not isinstance(value, bool):
        yield path, value


def replaced(value, path, new):
    """A copy of a JSON value with the item at `path` replaced."""
    if not path:
        return new
    copy = list(value) if isinstance(value, list) else dict(value)
    copy[path[0]] = replaced(value[path[0]], path[1:], new)
    return copy


def post_json(client, raw: str | bytes, content_type: str = "application/json"):
    return client.post("/v1/predict", content=raw, headers={"content-type": content_type})


def named(response, path) -> bool:
    """Whether a 422 names the field at `path`."""
    locations = [error["loc"] for error in response.json()["detail"]]
    return response.status_code == 422 and any(
        loc[: len(path) + 1] == ["body", *path] for loc in locations
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """The service under uvicorn on a loopback port, its output kept in a file."""

    def __init__(self, env: dict, output: Path) -> None:
        self.port = free_port()
        self.output = output
        with output.open("w") as log:
            self.process = subprocess.Popen(
                [*UVICORN, "--port", str(self.port)],
                env={**os.environ, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def get(self, path: str) -> str:
        url = f"http://127.0.0.1:{self.port}{path}"
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while True:
            assert self.process.poll() is None, self.output.read_text()
            try:
                self.get("/ready")
                return
            except OSError:
                assert time.monotonic() < deadline, "the server was not ready within 60 s"
                time.sleep(0.2)

    def exchange(self, request: bytes, close: bool = False) -> bytes:
        """Send raw bytes; the response, or nothing when `close` hangs up after sending."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(request)
            if close:
                return b""
            sock.shutdown(socket.SHUT_WR)
            return b"".join(iter(lambda: sock.recv(65536), b""))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def server(trained, example, tmp_path_factory):
    """A running service whose body limit is a little over the example's size."""
    limit = max(1024, 2 * len(json.dumps(example)))
    env = {
        "SERVICE_MODELS_DIR": str(trained.models),
        "SERVICE_PREDICTION_LOG": "false",
        "SERVICE_MAX_BODY_BYTES": str(limit),
    }
    running = Server(env, tmp_path_factory.mktemp("server") / "output.txt")
    running.limit = limit
    try:
        running.wait_ready()
        yield running
    finally:
        running.stop()


def chunked(path: str, body: bytes, size: int = 256) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode()
    parts = [body[i : i + size] for i in range(0, len(body), size)]
    return head + b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"


@pytest.mark.slow
def test_a_client_that_leaves_mid_body_counts_as_a_disconnect_not_a_server_error(server, example):
    body = json.dumps(example).encode()
    head = (
        "POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    server.exchange(head + body[: len(body) // 2], close=True)
    counted = 'http_requests_total{route="/v1/predict",status="499"} 1.0'
    deadline = time.monotonic() + 10
    while counted not in (metrics := server.get("/metrics")):
        assert time.monotonic() < deadline, metrics
        time.sleep(0.05)
    assert 'route="/v1/predict",status="500"' not in metrics
    assert "Traceback" not in server.output.read_text()


@pytest.mark.slow
def test_an_empty_or_short_api_key_stops_the_service_with_one_line(trained, tmp_path, monkeypatch):
    output = tmp_path / "output.txt"
    refused = Server({"SERVICE_MODELS_DIR": str(trained.models), "SERVICE_API_KEY": ""}, output)
    assert refused.process.wait(timeout=60) != 0
    lines = output.read_text().strip().splitlines()
    assert lines == [
        "invalid service settings: SERVICE_API_KEY: 0 characters; an API key needs 16 or more "
        "(an empty key does not turn authentication off)"
    ]
    monkeypatch.setenv("SERVICE_API_KEY", KEY[:15])
    with pytest.raises(SystemExit, match="SERVICE_API_KEY: 15 characters"):
        from_environment()


def test_serving_without_a_key_takes_an_explicit_setting_and_says_so(trained, monkeypatch, caplog):
    monkeypatch.delenv("SERVICE_ALLOW_ANONYMOUS")
    monkeypatch.setenv("SERVICE_MODELS_DIR", str(trained.models))
    with pytest.raises(SystemExit, match="or SERVICE_ALLOW_ANONYMOUS=true"):
        create_app()
    monkeypatch.setenv("SERVICE_ALLOW_ANONYMOUS", "true")
    create_app()
    assert "SERVICE_ALLOW_ANONYMOUS=true: every route is open" in caplog.text


def test_numbers_must_be_json_numbers_not_text_or_booleans(client, example):
    """A timestamp may be a year written either way, so timestamps are left out."""
    numbers = [
        path
        for path, value in leaves(example)
        if not isinstance(value, str) and "timestamps" not in path
    ]
    assert numbers
    for path in numbers:
        value = dict(leaves(example))[path]
        for lax in (str(value), True, False):
            response = client.post("/v1/predict", json=replaced(example, path, lax))
            assert named(response, path), (path, lax, response.text)


def test_a_long_string_gets_a_422_naming_the_field(client, example):
    strings = [path for path, value in leaves(example) if isinstance(value, str)]
    assert strings
    for path in strings:
        response = client.post("/v1/predict", json=replaced(example, path, "x" * 10_000))
        assert named(response, path), (path, response.text)


def test_the_prediction_log_rotates_by_size_and_keeps_the_set_number_of_backups(example, tmp_path):
    """Each round (open, write 4 to 6 records, close) drains once and passes the size."""
    path = tmp_path / "predictions.jsonl"
    request = json.dumps(example).encode()
    for written in (4, 5, 6):
        log = PredictionLog(path, 3 * len(request), 2, 10_000, frozenset(), interval=3600)
        for _ in range(written):
            assert log.append("2024-01-01T00:00:00.000+00:00", request, b'{"ok": true}')
        log.close()
    newest, older = (path.with_name(f"predictions.jsonl.{n}") for n in (1, 2))
    assert path.read_bytes() == b""
    assert len(newest.read_text().splitlines()) == 6
    assert len(older.read_text().splitlines()) == 5
    assert not path.with_name("predictions.jsonl.3").exists()
    records = [json.loads(line) for line in newest.read_text().splitlines()]
    assert all(record["request"] == example for record in records)


STAMP = "2024-01-01T00:00:00.000+00:00"


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"not within 10 s: {what}"
        time.sleep(0.01)


def test_the_prediction_log_writer_outlives_write_errors_and_a_rotation_elsewhere(
    example, tmp_path, caplog
):
    """A write that fails (here: a file where the log's folder should be) drops that drain's
    records, counted, and logs the error once; the writer goes on, and writes to the path
    again once it can. When another worker rotates the file, the writer follows the path."""
    folder = tmp_path / "logs"
    folder.write_text("not a folder")
    path, dropped = folder / "predictions.jsonl", []
    request = json.dumps(example).encode()
    log = PredictionLog(path, 10**6, 1, 10_000, frozenset(), interval=0.01, dropped=dropped.append)

    def lines(file: Path) -> int:
        return len(file.read_text().splitlines()) if file.exists() else 0

    try:
        for n in (1, 2):
            assert log.append(STAMP, request, b"{}")
            wait_until(lambda n=n: sum(dropped) == n, f"{n} records dropped")
        folder.unlink()
        assert log.append(STAMP, request, b"{}")
        wait_until(lambda: lines(path) == 1, "the first record written")
        path.rename(path.with_name("predictions.jsonl.1"))  # another worker rotated it
        assert log.append(STAMP, request, b"{}")
        wait_until(lambda: lines(path) == 1, "the second record written to the new file")
    finally:
        log.close()
    assert lines(path.with_name("predictions.jsonl.1")) == 1
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert "writing again" in caplog.text


def test_the_prediction_log_queue_is_bounded_in_bytes(example, tmp_path):
    request = json.dumps(example).encode()
    size = len(request) + len(b"{}")
    dropped = []
    log = PredictionLog(
        tmp_path / "predictions.jsonl",
        10**6,
        1,
        10_000,
        frozenset(),
        max_queued_bytes=3 * size,
        interval=3600,
        dropped=dropped.append,
    )
    assert all(log.append(STAMP, request, b"{}") for _ in range(3))
    assert not log.append(STAMP, request, b"{}")
    log.close()
    assert len((tmp_path / "predictions.jsonl").read_text().splitlines()) == 3
    assert dropped == []  # a full queue is counted by the caller, from append's answer


def cut(value, cap: int):
    """A JSON value with every string longer than `cap` cut to it, as the log cuts them."""
    if isinstance(value, dict):
        return {key: cut(item, cap) for key, item in value.items()}
    if isinstance(value, list):
        return [cut(item, cap) for item in value]
    return value[:cap] + "…" if isinstance(value, str) and len(value) > cap else value


def test_the_prediction_log_cuts_long_values_and_redacts_named_fields(trained, tmp_path, example):
    cap = max(len(value) for _, value in leaves(example) if isinstance(value, str)) - 1
    number = next(path for path, value in leaves(example) if not isinstance(value, str))
    field = number[: max(i for i, part in enumerate(number) if isinstance(part, str)) + 1]
    settings = settings_for(
        trained,
        tmp_path,
        prediction_log_max_value_chars=cap,
        prediction_log_redact=f"{field[-1]}, not_a_field",
    )
    with TestClient(create_app(settings)) as client:
        answer = client.post("/v1/predict", json=example).json()
    (record,) = [json.loads(line) for line in settings.prediction_log_path.read_text().splitlines()]
    assert cut(example, cap) != example
    assert record["request"] == replaced(cut(example, cap), field, "[redacted]")
    assert record["response"] == answer


def test_predict_answers_415_unless_the_body_is_sent_as_json(client, example):
    raw = json.dumps(example)
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        assert post_json(client, raw, content_type).status_code == 415
    assert client.post("/v1/predict", content=raw.encode()).status_code == 415
    assert post_json(client, raw, "Application/JSON; charset=utf-8").status_code == 200


def dumps_repeating(value, target) -> str:
    """JSON for `value` with the first key of the object `target` written twice."""
    if isinstance(value, dict):
        items = [
            f"{json.dumps(key)}: {dumps_repeating(item, target)}" for key, item in value.items()
        ]
        if value is target:
            items.append(items[0])
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(dumps_repeating(item, target) for item in value) + "]"
    return json.dumps(value)


def test_a_duplicate_key_at_any_depth_gets_a_422_naming_it(client, example, monkeypatch):
    inner = next(item for item in example.values() if isinstance(item, dict | list))
    inner = inner[0] if isinstance(inner, list) else inner  # a row, or the history
    for target in (example, inner):
        response = post_json(client, dumps_repeating(example, target))
        assert response.status_code == 422, response.text
        assert repr(next(iter(target))) in response.json()["detail"][0]["msg"]
    if PROBLEM_TYPE.name != "forecasting":  # a category may hold anything: colons too
        features = client.get("/v1/model").json()["features"]
        category = next(f["name"] for f in features if f["kind"] == "categorical")
        colons = replaced(example, ("instances", 0, category), 'said "no": twice at 10:30')
        assert client.post("/v1/predict", json=colons).status_code == 200
        response = post_json(client, dumps_repeating(colons, colons["instances"][0]))
        assert response.status_code == 422, response.text
        reparsed = []  # a colon that follows no quote cannot end a key: no second parse
        monkeypatch.setattr(predict, "duplicate_key", reparsed.append)
        timed = replaced(example, ("instances", 0, category), "at 10:30")
        assert client.post("/v1/predict", json=timed).status_code == 200
        assert reparsed == []


def test_every_key_is_counted_so_no_duplicate_is_missed():
    """Keys end with a quote and a colon, perhaps spaced; a value may add more, never less."""
    assert predict.key_ends(b'{"a" :1, "b":"c\\": d", "e"\n:[], "t": "10:30"}') == 5


@pytest.mark.slow
def test_a_post_without_a_body_is_answered(server):
    """`curl -X POST` sends neither Content-Length nor Transfer-Encoding."""
    reply = server.exchange(b"POST /v1/reload HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200"), reply


@pytest.mark.slow
def test_a_chunked_body_is_read_up_to_the_limit_and_refused_past_it(server, example):
    body = json.dumps(example).encode()
    assert server.exchange(chunked("/v1/predict", body)).startswith(b"HTTP/1.1 200")
    padded = body + b" " * server.limit  # valid JSON, over the limit
    reply = server.exchange(chunked("/v1/predict", padded))
    assert reply.startswith(b"HTTP/1.1 413"), reply


OPERATOR_ROUTES = ["/metrics", "/docs", "/redoc", "/openapi.json"]


def test_metrics_and_the_api_documents_need_the_key_unless_made_public(trained, tmp_path):
    settings = settings_for(trained, tmp_path, api_key=KEY)
    with TestClient(create_app(settings)) as client:
        for route in OPERATOR_ROUTES:
            assert client.get(route).status_code == 401, route
            assert client.get(route, headers={"X-API-Key": KEY}).status_code == 200, route
            assert client.get(route, auth=("prometheus", KEY)).status_code == 200, route
        assert "/openapi.json" in client.get("/docs", auth=("operator", KEY)).text
        assert client.get("/health").status_code == 200
    public = settings_for(trained, tmp_path, api_key=KEY, public_docs=True, public_metrics=True)
    with TestClient(create_app(public)) as client:
        assert all(client.get(route).status_code == 200 for route in OPERATOR_ROUTES)
        assert client.get("/dashboard").status_code == 401


def test_the_runbook_page_shows_raw_html_as_text(trained, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "runbook.md").write_text(
        "# Runbook\n\n<script>alert(1)</script>\n\n<img src=x onerror=alert(1)>\n\n"
        "[call](javascript:alert(1)) and [page](https://example.org/runbook)\n"
    )
    settings = settings_for(trained, tmp_path, docs_dir=docs)
    with TestClient(create_app(settings)) as client:
        page = client.get("/dashboard/runbook").text
    assert "<script>" not in page and "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'href="javascript:' not in page
    assert '<a href="https://example.org/runbook">page</a>' in page


# Inputs: monitor files and logs, raw data changed after collect, database URLs.


JUNK = bytes(range(256)) * 4  # not text, not Parquet; holds newlines
NOT_OBJECTS = {
    "time": "2026-01-01T00:00:00+00:00",
    "request": {"instances": [1, 2], "history": [1, 2]},
    "response": {"predictions": [1, 2], "forecast": [1, 2], "model_version": "v"},
}
LISTED_VERSION = {
    "time": "2026-01-01T00:00:00+00:00",
    "request": {
        "instances": [{"x": 1}],
        "history": {"timestamps": ["2026-01-01"], "values": [1.0]},
    },
    "response": {
        "predictions": [1],
        "forecast": [{"timestamp": "2026-01-02", "value": 1.0}],
        "model_version": ["v"],
    },
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
    ("--log", "version_not_text.jsonl", json.dumps(LISTED_VERSION).encode() + b"\n"),
]


@pytest.fixture
def root(trained_project, tmp_path):
    """A project root with the trained project's configs and models."""
    shutil.copytree(trained_project.root / "configs", tmp_path / "configs")
    shutil.copytree(trained_project.models, tmp_path / "models")
    return tmp_path


@pytest.fixture(scope="module")
def served(trained_project):
    """The trained project's current bundle, loaded once."""
    return bundle.load(bundle.resolve(trained_project.models, "current"))


@pytest.mark.parametrize(("option", "name", "content"), BAD_INPUTS)
def test_bad_monitor_input_is_one_line_and_exit_2(
    root, served, monkeypatch, capsys, caplog, option, name, content
):
    """Not the drift code 1, and no traceback: a missing, empty, binary or corrupt file, other
    columns, or log lines that are no prediction records. The bundle copied into `root` is
    the one loaded once for all of these cases."""
    loaded = {bundle.resolve(root / "models", "current"): served}
    monkeypatch.setattr(bundle, "load", loaded.__getitem__)
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


@pytest.fixture(scope="module")
def logged_lines(trained_project, tmp_path_factory) -> list[str]:
    """Lines of the service's own log, from the OpenAPI example sent three times."""
    settings = settings_for(trained_project, tmp_path_factory.mktemp("logged"))
    with TestClient(create_app(settings)) as client:
        schemas = client.get("/openapi.json").json()["components"]["schemas"]
        body = schemas["PredictRequest"]["examples"][0]
        for _ in range(3):
            assert client.post("/v1/predict", json=body).status_code == 200
    return settings.prediction_log_path.read_text(encoding="utf-8").splitlines()


@pytest.fixture
def records(logged_lines) -> list[dict]:
    """The three records of the service's own log, to change freely."""
    return [json.loads(line) for line in logged_lines]


def test_the_monitor_reads_rotated_logs_oldest_first(records, tmp_path):
    """predictions.jsonl.2, .1, then predictions.jsonl, so --last and --since span a
    rotation."""
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    log = tmp_path / "logs" / "predictions.jsonl"
    log.parent.mkdir()
    for hours, (record, name) in enumerate(zip(records, [".2", ".1", ""], strict=True)):
        record["time"] = (start + timedelta(hours=hours)).isoformat()
        log.with_name(log.name + name).write_text(json.dumps(record) + "\n", encoding="utf-8")

    times = [r["time"] - start for r in monitor.read_log(log)]
    assert times == [timedelta(hours=0), timedelta(hours=1), timedelta(hours=2)]
    assert [r["time"] - start for r in monitor.read_log(log, last=2)] == times[1:]
    since = start + timedelta(minutes=30)
    assert [r["time"] - start for r in monitor.read_log(log, since=since)] == times[1:]


def test_a_log_line_of_the_wrong_shape_is_skipped(records, tmp_path, caplog):
    """A model_version that is not a string, or predictions that are not a list of values."""
    log = tmp_path / "logs" / "predictions.jsonl"
    log.parent.mkdir()
    records[0]["response"]["model_version"] = ["v"]
    answer = "forecast" if PROBLEM_TYPE.name == "forecasting" else "predictions"
    records[1]["response"][answer] = [[1]]
    log.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        assert len(monitor.read_log(log)) == 1
    assert "skipped 2 unreadable lines" in caplog.text


def test_a_rotation_between_listing_and_reading_the_log_is_no_error(records, tmp_path, monkeypatch):
    log = tmp_path / "logs" / "predictions.jsonl"
    log.parent.mkdir()
    for record, name in zip(records[:2], [".1", ""], strict=True):
        log.with_name(log.name + name).write_text(json.dumps(record) + "\n", encoding="utf-8")
    listed = drift_report.log_files(log)
    log.with_name(log.name + ".1").unlink()  # dropped by a rotation after the listing
    monkeypatch.setattr(drift_report, "log_files", lambda path: listed)
    assert len(monitor.read_log(log)) == 1
    log.unlink()
    with pytest.raises(DataError, match="no prediction log"):
        monitor.read_log(log)


def test_an_unexpected_error_exits_2_with_its_traceback_never_1(root, monkeypatch, caplog):
    def fail(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(monitor, "run", fail)
    code = run_cli(monkeypatch, "monitor", "--root", str(root), "--log", "predictions.jsonl")
    assert code == 2
    [record] = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert record.exc_info is not None and "a bug" in str(record.exc_info[1])


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
