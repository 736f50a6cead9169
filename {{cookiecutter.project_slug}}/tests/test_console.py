"""The operator console: roles, CSRF tokens, double submits, uploads and their limit and
validation, the drift check, promotion and rollback, a background retrain, the audit log.

Each test acts on its own copy of the trained project: the console changes data and models."""

import json
import re
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import another_version, run_cli, settings_for
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }} import bundle, console, data
from {{ cookiecutter.package_name }}.api import create_app
from {{ cookiecutter.package_name }}.config import Paths, load_problem
{%- if cookiecutter.problem_type != "forecasting" %}
from {{ cookiecutter.package_name }}.problem_type import PROBLEM_TYPE
{%- endif %}
from {{ cookiecutter.package_name }}.service.models import DESCRIPTIVE, request_shape

CLIENT, VIEWER, OPERATOR = ("client-key-16-chars", "viewer-key-16-chars", "operator-key-16-chars")
AS_OPERATOR, AS_VIEWER = ("olga", OPERATOR), ("vera", VIEWER)


@pytest.fixture
def project(trained_project, tmp_path) -> Paths:
    """A copy of the trained project that the console may change."""
    root = tmp_path / "project"
    shutil.copytree(trained_project.root, root, ignore=shutil.ignore_patterns("logs"))
    return Paths(root)


def console_client(project: Paths, tmp_path: Path, **changes) -> TestClient:
    keys = {"api_key": CLIENT, "viewer_key": VIEWER, "operator_key": OPERATOR}
    settings = settings_for(project, tmp_path, reports_dir=project.reports, **keys, **changes)
    return TestClient(create_app(settings))


def token(client: TestClient, page: str = "/dashboard") -> str:
    """A fresh CSRF token from the first console form on `page`, as an operator sees it."""
    html = client.get(page, auth=AS_OPERATOR).text
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def act(client: TestClient, action: str, page: str = "/dashboard", **fields):
    """Submit the console's `action` form as an operator, with a token from `page`."""
    form = {"csrf": token(client, page), **fields}
    return client.post(f"/dashboard/{action}", auth=AS_OPERATOR, data=form, follow_redirects=False)


def outcome(response) -> str:
    return re.search(r'id="outcome"[^>]*>([^<]*)<', response.text).group(1)


def new_rows(paths: Paths) -> pd.DataFrame:
{%- if cookiecutter.problem_type == "forecasting" %}
    """The next 120 steps of the series, its level moved up by five standard deviations."""
    target = load_problem(paths.problem).target
    raw = data.read_raw(paths.raw)
    stamps = pd.to_datetime(raw[target.timestamp], format="ISO8601")
    steps = pd.date_range(stamps.max(), periods=121, freq=target.frequency)[1:]
    values = raw[target.name].tail(120).to_numpy() + 5 * raw[target.name].std()
    return pd.DataFrame({target.timestamp: steps.strftime("%Y-%m-%d"), target.name: values})
{%- elif cookiecutter.problem_type == "anomaly_detection" %}
    """Readings of the new product line, labelled, as `make new-line-data` writes them."""
    return PROBLEM_TYPE.samples["sensors_new_line"]().head(400)
{%- elif cookiecutter.problem_type == "text_classification" %}
    """200 rows of the current data, their texts in other languages."""
    raw = data.read_raw(paths.raw)
    kinds = PROBLEM_TYPE.resolve_features(raw, load_problem(paths.problem))
    text = next(name for name, kind in kinds.items() if kind == "text")
    rows = raw.sample(200, replace=True, random_state=0)
    foreign = ["Das Gerät ist prima und kam pünktlich an.", "Le produit est cassé et mal emballé."]
    return rows.assign(**{text: [foreign[i % 2] for i in range(len(rows))]})
{%- else %}
    """200 rows of the current data, one number moved up by five standard deviations."""
    raw = data.read_raw(paths.raw)
    kinds = PROBLEM_TYPE.resolve_features(raw, load_problem(paths.problem))
    number = next(name for name, kind in kinds.items() if kind == "numeric")
    rows = raw.sample(200, replace=True, random_state=0)
    return rows.assign(**{number: rows[number] + 5 * raw[number].std()})
{%- endif %}


def spoiler(paths: Paths) -> tuple[str, str]:
{%- if cookiecutter.problem_type == "forecasting" %}
    """The series' value column, and a value that is no number."""
    return load_problem(paths.problem).target.name, "not a value"
{%- else %}
    """A feature and a value that breaks its contract: no number, or blank text."""
    raw = data.read_raw(paths.raw)
    kinds = PROBLEM_TYPE.resolve_features(raw, load_problem(paths.problem))
    if "numeric" in kinds.values():
        return next(name for name, kind in kinds.items() if kind == "numeric"), "not a value"
    return next(name for name, kind in kinds.items() if kind == "text"), "   "
{%- endif %}


def upload(client: TestClient, token: str, frame: pd.DataFrame, name: str = "new.csv"):
    content = frame.to_csv(index=False).encode()
    files = {"file": (name, content, "text/csv")}
    return client.post("/dashboard/upload", auth=AS_OPERATOR, data={"csrf": token}, files=files)


def test_each_key_has_its_role(project, tmp_path):
    with console_client(project, tmp_path) as client:
        assert client.get("/dashboard").status_code == 401
        assert client.get("/dashboard", auth=("c", CLIENT)).status_code == 401
        assert client.get("/dashboard", headers={"X-API-Key": CLIENT}).status_code == 401
        viewer_page = client.get("/dashboard", auth=AS_VIEWER)
        form = {"csrf": token(client)}
        refused = client.post("/dashboard/retrain", auth=AS_VIEWER, data=form)
        card = client.get("/v1/model", headers={"X-API-Key": CLIENT})
        assert client.get("/v1/model", headers={"X-API-Key": OPERATOR}).status_code == 401
    assert viewer_page.status_code == 200
    assert 'id="console-upload"' not in viewer_page.text
    assert "actions need the operator key" in viewer_page.text
    assert refused.status_code == 403
    assert card.status_code == 200
    assert not (tmp_path / "jobs").exists()  # nothing started
    (entry,) = console.read_audit(tmp_path / "audit.jsonl")
    assert entry["user"] == "vera"
    assert entry["role"] == "viewer"
    assert (entry["action"], entry["outcome"]) == ("retrain", "refused")


def test_a_post_without_a_valid_csrf_token_is_refused(project, tmp_path):
    foreign = console.Forms(b"another service's key").token()
    with console_client(project, tmp_path) as client:
        for form in ({}, {"csrf": "forged"}, {"csrf": foreign}):
            reply = client.post("/dashboard/retrain", auth=AS_OPERATOR, data=form)
            assert reply.status_code == 403, form
            assert "CSRF token" in reply.text
    assert not (tmp_path / "jobs").exists()
    entries = console.read_audit(tmp_path / "audit.jsonl")
    assert [e["outcome"] for e in entries] == ["refused"] * 3


def test_a_form_submitted_twice_runs_once(project, tmp_path, monkeypatch, capsys):
    before = len(data.read_raw(project.raw))
    rows = new_rows(project)
    with console_client(project, tmp_path) as client:
        form = token(client)
        first, second = upload(client, form, rows), upload(client, form, rows)
    assert (first.status_code, outcome(first)) == (200, "accepted")
    assert second.status_code == 409
    assert "already submitted" in second.text
    assert len(data.read_raw(project.raw)) == before + len(rows)  # added once
    (entry,) = console.read_audit(tmp_path / "audit.jsonl")
    assert (entry["user"], entry["role"], entry["action"]) == ("olga", "operator", "upload")

    audit_log = str(tmp_path / "audit.jsonl")
    assert run_cli(monkeypatch, "audit", "--root", str(project.root), "--log", audit_log) == 0
    assert "olga (operator)  upload: accepted  new.csv" in capsys.readouterr().out


def test_an_upload_over_the_size_limit_is_refused(project, tmp_path):
    content = new_rows(project).to_csv(index=False).encode()
    assert len(content) > 2048
    with console_client(project, tmp_path, max_upload_bytes=2048) as client:
        form, files = {"csrf": token(client)}, {"file": ("new.csv", content, "text/csv")}
        reply = client.post("/dashboard/upload", auth=AS_OPERATOR, data=form, files=files)
    assert reply.status_code == 413
    assert "limit of 2048" in reply.text
    assert not (project.root / console.UPLOADS).exists()


def test_a_bad_upload_is_reported_column_by_column_and_nothing_is_stored(project, tmp_path):
    raw_sha = bundle.sha256_file(project.raw / data.RAW_FILE)
    rows = new_rows(project).reset_index(drop=True)
    spoilt, value = spoiler(project)
    dropped = next(column for column in rows.columns if column != spoilt)
    bad = rows.rename(columns={dropped: "renamed"}).assign(**{spoilt: value})
    with console_client(project, tmp_path) as client:
        per_column = upload(client, token(client), bad)
        junk = client.post(
            "/dashboard/upload",
            auth=AS_OPERATOR,
            data={"csrf": token(client)},
            files={"file": ("readings.xlsx", b"PK\x03\x04 not a table", "application/zip")},
        )
        empty = upload(client, token(client), rows.head(0))
    assert per_column.status_code == 422
    assert outcome(per_column) == "rejected"
    assert f"column &#39;{dropped}&#39;: missing" in per_column.text
    assert f"column &#39;{spoilt}&#39;" in per_column.text
    assert "columns not in the data, left out: renamed" in per_column.text
    assert junk.status_code == 422
    assert "upload a .csv or .parquet file" in junk.text
    assert empty.status_code == 422
    assert bundle.sha256_file(project.raw / data.RAW_FILE) == raw_sha
    assert not (project.raw / "archive").exists()
    assert not (project.root / console.UPLOADS).exists()


def test_accepted_rows_become_a_new_snapshot_and_the_drift_check_sees_them(project, tmp_path):
    previous = data.recorded_sha256(project.raw / data.MANIFEST_FILE)
    rows = new_rows(project)
    with console_client(project, tmp_path) as client:
        accepted = upload(client, token(client), rows)
        (kept,) = console.uploads(project.root)
        checked = act(client, "drift-check", source=kept, last="")
        page = client.get("/dashboard", auth=AS_OPERATOR).text
    assert outcome(accepted) == "accepted"
    manifest = json.loads((project.raw / data.MANIFEST_FILE).read_text())
    assert manifest["source"]["kind"] == "upload"
    assert manifest["source"]["file"] == "new.csv"
    assert manifest["added_to"] == previous
    assert manifest["added_rows"] == len(rows)
    assert (project.raw / "archive" / f"dataset-{previous[:12]}.parquet").exists()
    assert (checked.status_code, outcome(checked)) == (200, "drift")
    assert 'id="drift-status" class="badge drift">drift<' in page
    assert "drift check: drift" not in page  # the audit table keeps action and outcome apart
    entries = console.read_audit(tmp_path / "audit.jsonl")
    assert [(e["action"], e["outcome"]) for e in entries] == [
        ("upload", "accepted"),
        ("drift check", "drift"),
    ]


def test_promotion_needs_a_passed_gate_and_a_confirmation(project, tmp_path):
    served = bundle.read_pointer(project.models, "current")
    unevaluated = another_version(project.models, served)
    with console_client(project, tmp_path) as client:
        unconfirmed = act(client, "promote", version=served)
        ungated = act(client, "promote", version=unevaluated, confirm="yes")
        newer = act(client, "rollback", version=unevaluated, confirm="yes")
        outside = act(client, "rollback", version="../../etc", confirm="yes")
        version = client.get("/v1/model", headers={"X-API-Key": CLIENT}).json()["model_version"]
    assert unconfirmed.status_code == 422
    assert "confirm" in unconfirmed.text
    assert ungated.status_code == 409
    assert "has not passed the evaluation gate" in ungated.text
    assert newer.status_code == 409
    assert outside.status_code == 409
    assert version == served == bundle.read_pointer(project.models, "current")


def test_a_model_retrained_on_new_data_is_served_without_a_restart(trained_project):
    schema = bundle.read_metadata(bundle.resolve(trained_project.models, "current"))["features"]
    retrained = [{**f, **{k: "seen anew" for k in DESCRIPTIVE & f.keys()}} for f in schema]
    renamed = [{**schema[0], "name": "another"}, *schema[1:]]
    assert request_shape(retrained) == request_shape(schema)
    assert request_shape(renamed) != request_shape(schema)
{%- if cookiecutter.problem_type != "forecasting" %}
    band = {"name": "band", "kind": "categorical", "dtype": "object", "categories": ["low"]}
    wider = {**band, "categories": ["low", "high"]}
    longer = {**band, "categories": ["low", "x" * 300]}  # over the length requests may send
    assert request_shape([wider]) == request_shape([band]) != request_shape([longer])
{%- endif %}


def test_a_retrain_that_fails_leaves_the_serving_model_and_says_why(project, tmp_path):
    served = bundle.read_pointer(project.models, "current")
    (project.root / "configs" / "params.yaml").write_text("model: [not, a, mapping]\n")
    with console_client(project, tmp_path) as client:
        job = act(client, "retrain").headers["location"]
        deadline = time.monotonic() + 120
        while 'class="badge warn">running<' in (page := client.get(job, auth=AS_VIEWER).text):
            assert time.monotonic() < deadline, "the retrain did not end within 120 s"
            time.sleep(0.5)
        dashboard = client.get("/dashboard", auth=AS_OPERATOR).text
    assert 'id="job-status" class="badge bad">error<' in page
    assert "the serving model is untouched" in page
    assert "params.yaml" in page  # the log's last lines say why
    assert 'id="promote-candidate"' not in page
    assert bundle.read_pointer(project.models, "current") == served
    assert 'name="version"' not in dashboard.split('id="console-promote"')[1].split("</section>")[0]


@pytest.mark.slow  # a real retrain in its own process
def test_a_retrain_runs_in_the_background_once_and_waits_for_promotion(project, tmp_path):
    first = bundle.read_pointer(project.models, "current")
    with console_client(project, tmp_path) as client:
        started = act(client, "retrain")
        job = started.headers["location"]
        again = act(client, "retrain")
        deadline = time.monotonic() + 600
        while 'class="badge warn">running<' in (page := client.get(job, auth=AS_VIEWER).text):
            assert time.monotonic() < deadline, "the retrain did not end within 600 s"
            time.sleep(1)
        page = client.get(job, auth=AS_OPERATOR).text
        assert bundle.read_pointer(project.models, "current") == first  # no promotion by itself
        second = re.search(r'name="version" value="([^"]+)"', page).group(1)
        promoted = act(client, "promote", job, version=second, confirm="yes")
        now_serving = client.get("/v1/model", headers={"X-API-Key": CLIENT}).json()
        rolled_back = act(client, "rollback", version=first, confirm="yes")
        then_serving = client.get("/v1/model", headers={"X-API-Key": CLIENT}).json()
    assert started.status_code == 303
    assert again.status_code == 409
    assert "one at a time" in again.text
    assert 'id="job-status" class="badge ok">passed<' in page
    assert 'step <strong id="job-step">evaluate (4 of 4)' in page
    assert "step 3/4: train" in page  # the log, line by line
    assert 'id="gate-verdict" class="badge ok">passed<' in page
    assert (outcome(promoted), now_serving["model_version"]) == ("done", second)
    assert (outcome(rolled_back), then_serving["model_version"]) == ("done", first)
    actions = [(e["action"], e["outcome"]) for e in console.read_audit(tmp_path / "audit.jsonl")]
    assert actions == [
        ("retrain", "started"),
        ("retrain", "refused"),
        ("promote", "done"),
        ("rollback", "done"),
    ]
