"""What the service promises about its own safety: keys, strict and bounded input, content
types, body limits, disconnects, a bounded prediction log and a safe runbook page. Each
request starts from the example of the served OpenAPI document."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import settings_for
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.api import create_app
from {{ cookiecutter.package_name }}.problem_type import PROBLEM_TYPE
from {{ cookiecutter.package_name }}.service.settings import from_environment
from {{ cookiecutter.package_name }}.service.telemetry import PredictionLog

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
def project(request):
    """A trained project with a number, a category and a date (rows), or the series one."""
    name = "trained_project" if PROBLEM_TYPE.name == "forecasting" else "mixed_project"
    return request.getfixturevalue(name)


@pytest.fixture(scope="module")
def example(project, tmp_path_factory) -> dict:
    settings = settings_for(project, tmp_path_factory.mktemp("example"))
    with TestClient(create_app(settings)) as client:
        schemas = client.get("/openapi.json").json()["components"]["schemas"]
    return schemas["PredictRequest"]["examples"][0]


@pytest.fixture
def client(project, tmp_path):
    with TestClient(create_app(settings_for(project, tmp_path))) as client:
        yield client


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
def server(project, example, tmp_path_factory):
    """A running service whose body limit is a little over the example's size."""
    limit = max(1024, 2 * len(json.dumps(example)))
    env = {
        "SERVICE_MODELS_DIR": str(project.models),
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


def test_an_empty_or_short_api_key_stops_the_service_with_one_line(project, tmp_path, monkeypatch):
    output = tmp_path / "output.txt"
    refused = Server({"SERVICE_MODELS_DIR": str(project.models), "SERVICE_API_KEY": ""}, output)
    assert refused.process.wait(timeout=60) != 0
    lines = output.read_text().strip().splitlines()
    assert lines == [
        "invalid service settings: SERVICE_API_KEY: 0 characters; an API key needs 16 or more "
        "(an empty key does not turn authentication off)"
    ]
    monkeypatch.setenv("SERVICE_API_KEY", KEY[:15])
    with pytest.raises(SystemExit, match="SERVICE_API_KEY: 15 characters"):
        from_environment()


def test_serving_without_a_key_takes_an_explicit_setting_and_says_so(project, monkeypatch, caplog):
    monkeypatch.delenv("SERVICE_ALLOW_ANONYMOUS")
    monkeypatch.setenv("SERVICE_MODELS_DIR", str(project.models))
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


def cut(value, cap: int):
    """A JSON value with every string longer than `cap` cut to it, as the log cuts them."""
    if isinstance(value, dict):
        return {key: cut(item, cap) for key, item in value.items()}
    if isinstance(value, list):
        return [cut(item, cap) for item in value]
    return value[:cap] + "…" if isinstance(value, str) and len(value) > cap else value


def test_the_prediction_log_cuts_long_values_and_redacts_named_fields(project, tmp_path, example):
    cap = max(len(value) for _, value in leaves(example) if isinstance(value, str)) - 1
    number = next(path for path, value in leaves(example) if not isinstance(value, str))
    field = number[: max(i for i, part in enumerate(number) if isinstance(part, str)) + 1]
    settings = settings_for(
        project,
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


def test_a_duplicate_key_at_any_depth_gets_a_422_naming_it(client, example):
    inner = next(item for item in example.values() if isinstance(item, dict | list))
    inner = inner[0] if isinstance(inner, list) else inner  # a row, or the history
    for target in (example, inner):
        response = post_json(client, dumps_repeating(example, target))
        assert response.status_code == 422, response.text
        assert repr(next(iter(target))) in response.json()["detail"][0]["msg"]
    if PROBLEM_TYPE.name != "forecasting":  # a category may hold anything: colons too
        features = client.get("/v1/model").json()["features"]
        category = next(f["name"] for f in features if f["kind"] == "categorical")
        colons = replaced(example, ("instances", 0, category), 'said "no": twice')
        assert client.post("/v1/predict", json=colons).status_code == 200


def test_a_post_without_a_body_is_answered(server):
    """`curl -X POST` sends neither Content-Length nor Transfer-Encoding."""
    reply = server.exchange(b"POST /v1/reload HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200"), reply


def test_a_chunked_body_is_read_up_to_the_limit_and_refused_past_it(server, example):
    body = json.dumps(example).encode()
    assert server.exchange(chunked("/v1/predict", body)).startswith(b"HTTP/1.1 200")
    padded = body + b" " * server.limit  # valid JSON, over the limit
    reply = server.exchange(chunked("/v1/predict", padded))
    assert reply.startswith(b"HTTP/1.1 413"), reply


OPERATOR_ROUTES = ["/metrics", "/docs", "/redoc", "/openapi.json"]


def test_metrics_and_the_api_documents_need_the_key_unless_made_public(project, tmp_path):
    settings = settings_for(project, tmp_path, api_key=KEY)
    with TestClient(create_app(settings)) as client:
        for route in OPERATOR_ROUTES:
            assert client.get(route).status_code == 401, route
            assert client.get(route, headers={"X-API-Key": KEY}).status_code == 200, route
            assert client.get(route, auth=("prometheus", KEY)).status_code == 200, route
        assert "/openapi.json" in client.get("/docs", auth=("operator", KEY)).text
        assert client.get("/health").status_code == 200
    public = settings_for(project, tmp_path, api_key=KEY, public_docs=True, public_metrics=True)
    with TestClient(create_app(public)) as client:
        assert all(client.get(route).status_code == 200 for route in OPERATOR_ROUTES)
        assert client.get("/dashboard").status_code == 401


def test_the_runbook_page_shows_raw_html_as_text(project, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "runbook.md").write_text(
        "# Runbook\n\n<script>alert(1)</script>\n\n<img src=x onerror=alert(1)>\n\n"
        "[call](javascript:alert(1)) and [page](https://example.org/runbook)\n"
    )
    settings = settings_for(project, tmp_path, docs_dir=docs)
    with TestClient(create_app(settings)) as client:
        page = client.get("/dashboard/runbook").text
    assert "<script>" not in page and "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'href="javascript:' not in page
    assert '<a href="https://example.org/runbook">page</a>' in page
