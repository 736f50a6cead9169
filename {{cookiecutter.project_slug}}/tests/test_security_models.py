"""What the registry and the service promise about bundles: only version names of signed
bundles inside models/ are served, a forgery is refused, reloads follow the content, the
watcher outlives a bad pointer, and /ready notices a deleted bundle."""

import json
import logging
import shutil
import stat
import time
from pathlib import Path

import pytest
from conftest import run_cli, settings_for
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }} import bundle, registry
from {{ cookiecutter.package_name }}.api import create_app
from {{ cookiecutter.package_name }}.config import Paths


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


def another_version(models: Path, version: str) -> str:
    """A second genuine bundle: the same models saved (and signed) again, with a note that
    gives it another content hash, so another version name."""
    loaded = bundle.load(models / version)
    recorded = ("version", "created_at", "files", "content_sha256")
    metadata = {key: value for key, value in loaded.metadata.items() if key not in recorded}
    metadata["note"] = "saved again"
    return bundle.save(
        models, loaded.model, loaded.baseline, metadata, loaded.reference, loaded.onnx
    )


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
