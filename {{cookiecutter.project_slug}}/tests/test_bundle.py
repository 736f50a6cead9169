import errno
import json
import shutil

import pytest

from {{ cookiecutter.package_name }} import bundle, data, registry
from {{ cookiecutter.package_name }}.problem_type import PROBLEM_TYPE


@pytest.fixture
def trained(trained_project, project):
    """The bundle train saved for the trained project, in a copy of its models and data."""
    shutil.copytree(trained_project.models, project.models)
    shutil.copytree(trained_project.processed, project.processed)
    events = registry.history(project.models)
    return project.models / next(e["version"] for e in events if e["event"] == "trained")


def test_a_bundle_round_trips_with_its_models_and_reference(trained, problem):
    loaded = bundle.load(trained)
    history, period, _ = data.read_processed(trained.parents[1] / "data" / "processed")
    y, candidate, baseline = PROBLEM_TYPE.held_out(loaded, history, period, problem.target)

    assert len(candidate.values) == len(baseline.values) == len(y) > 0
    assert loaded.metadata["target"] == problem.target.name
    assert loaded.reference["features"]
    assert bundle.read_pointer(trained.parent, "candidate") == loaded.version


def test_a_tampered_model_file_is_refused(trained):
    with (trained / bundle.MODEL).open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(bundle.BundleError, match="does not match its recorded sha256"):
        bundle.load(trained)


def test_edited_metadata_is_refused(trained):
    path = trained / bundle.METADATA
    metadata = json.loads(path.read_text())
    metadata["cv"]["mean"] = 1.0
    path.write_text(json.dumps(metadata))
    with pytest.raises(bundle.BundleError, match="content hash"):
        bundle.verify(trained)


def test_a_failed_save_leaves_no_partial_bundle(project, monkeypatch):
    def broken_dump(obj, path):
        raise OSError("disk full")

    monkeypatch.setattr(bundle.sio, "dump", broken_dump)
    with pytest.raises(OSError, match="disk full"):
        bundle.save(project.models, object(), object(), {}, {})
    assert list(project.models.iterdir()) == []


def test_a_pointer_holds_a_version_name_or_is_refused_in_one_line(project):
    project.models.mkdir()
    pointer = project.models / "current"
    pointer.write_bytes(b"\xff\xfe\n")
    with pytest.raises(bundle.BundleError, match="is not text"):
        bundle.read_pointer(project.models, "current")
    for text in ("../elsewhere", "/tmp/bundle", ".."):
        pointer.write_text(text + "\n")
        with pytest.raises(bundle.BundleError, match="not a version name"):
            bundle.resolve(project.models, "current")


def test_a_key_created_by_a_concurrent_train_is_used(tmp_path, monkeypatch):
    """Two trains racing to create the key file: the second one reads the first's key."""
    monkeypatch.delenv(bundle.KEY_ENV)
    key_file = tmp_path / bundle.KEY_FILE

    def created_meanwhile(source, target):
        key_file.write_text("the other train's key\n")
        key_file.chmod(0o600)
        raise FileExistsError(errno.EEXIST, "File exists")

    monkeypatch.setattr(bundle.os, "link", created_meanwhile)
    assert bundle.signing_key(tmp_path / "models", create=True) == b"the other train's key"
    assert [path.name for path in tmp_path.iterdir()] == [bundle.KEY_FILE]


def test_a_key_that_cannot_be_created_asks_for_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(bundle.KEY_ENV)

    def read_only(source, target):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(bundle.os, "link", read_only)
    with pytest.raises(bundle.BundleError, match=f"Read-only file system.*set {bundle.KEY_ENV}"):
        bundle.signing_key(tmp_path / "models", create=True)
