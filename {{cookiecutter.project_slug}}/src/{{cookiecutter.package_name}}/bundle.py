"""Model bundles: save, verify and load them, and keep the pointers and the registry log.

A bundle is a folder `models/<version>/` holding the candidate and the baseline in skops
format (loading it executes no code), the candidate's estimator in ONNX for fast serving
when it converts, the reference statistics and `metadata.json`. The metadata records a
sha256 per file and a content hash over all of it, checked before loading.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import skops.io as sio

from .errors import ProjectError

METADATA = "metadata.json"
MODEL = "model.skops"
BASELINE = "baseline.skops"
REFERENCE = "reference.json"
ONNX = "model.onnx"
REQUIRED = (MODEL, BASELINE, REFERENCE)
REGISTRY = "registry.jsonl"
TRUSTED_MODULES = ("builtins", "collections", "numpy", "scipy", "sklearn", __package__)


class BundleError(ProjectError):
    """A bundle is missing, incomplete or does not match its recorded hashes."""


@dataclass(frozen=True)
class Bundle:
    version: str
    path: Path
    model: Any
    baseline: Any
    metadata: dict
    reference: dict
    onnx: bytes | None = None


def sha256_file(path: Path) -> str:
    """The sha256 of a file, read in blocks: the bundle's files, the raw snapshot."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(path: Path, payload: dict) -> None:
    """`payload` as indented JSON with sorted keys, replacing `path` in one step."""
    _write_atomic(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def _content_hash(files: dict[str, str], metadata: dict) -> str:
    body = {key: value for key, value in metadata.items() if key != "content_sha256"}
    payload = json.dumps({"files": files, "metadata": body}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def save(
    models_dir: Path, model, baseline, metadata: dict, reference: dict, onnx: bytes | None = None
) -> str:
    """Write a new bundle and return its version. A half-written bundle is never visible."""
    models_dir.mkdir(parents=True, exist_ok=True)
    staging = models_dir / f".staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        sio.dump(model, staging / MODEL)
        sio.dump(baseline, staging / BASELINE)
        (staging / REFERENCE).write_text(json.dumps(reference, indent=2, sort_keys=True) + "\n")
        if onnx is not None:
            (staging / ONNX).write_bytes(onnx)
        names = [*REQUIRED, *([ONNX] if onnx is not None else [])]
        files = {name: sha256_file(staging / name) for name in names}
        content = _content_hash(files, {**metadata, "files": files})
        created = datetime.now(timezone.utc)
        version = f"{created:%Y%m%d-%H%M%S}-{content[:8]}"
        full = {
            **metadata,
            "version": version,
            "created_at": created.isoformat(timespec="milliseconds"),
        }
        full["files"] = files
        full["content_sha256"] = _content_hash(files, full)
        (staging / METADATA).write_text(
            json.dumps(full, indent=2, sort_keys=True, default=str) + "\n"
        )
        if not (models_dir / version).exists():  # else: the same content, saved this second
            os.replace(staging, models_dir / version)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return version


def verify(bundle_dir: Path) -> dict:
    """Check every file against the metadata's hashes; return the metadata."""
    meta_path = bundle_dir / METADATA
    if not meta_path.exists():
        raise BundleError(f"{bundle_dir}: no {METADATA}; not a model bundle")
    metadata = json.loads(meta_path.read_text(encoding="utf-8"))
    files = metadata.get("files", {})
    for name in sorted({*REQUIRED, *files}):
        path = bundle_dir / name
        if not path.exists():
            raise BundleError(f"{bundle_dir}: {name} is missing")
        if sha256_file(path) != files.get(name):
            raise BundleError(f"{bundle_dir}: {name} does not match its recorded sha256")
    if _content_hash(files, metadata) != metadata.get("content_sha256"):
        raise BundleError(f"{bundle_dir}: metadata does not match its content hash")
    return metadata


def _load_skops(path: Path):
    untrusted = sio.get_untrusted_types(file=path)
    unexpected = [t for t in untrusted if t.split(".")[0] not in TRUSTED_MODULES]
    if unexpected:
        raise BundleError(f"{path}: refusing to load unexpected types: {', '.join(unexpected)}")
    return sio.load(path, trusted=untrusted)


def load(bundle_dir: Path) -> Bundle:
    """Verify, then load a bundle."""
    metadata = verify(bundle_dir)
    return Bundle(
        version=metadata["version"],
        path=bundle_dir,
        model=_load_skops(bundle_dir / MODEL),
        baseline=_load_skops(bundle_dir / BASELINE),
        metadata=metadata,
        reference=json.loads((bundle_dir / REFERENCE).read_text(encoding="utf-8")),
        onnx=(bundle_dir / ONNX).read_bytes() if ONNX in metadata["files"] else None,
    )


def read_pointer(models_dir: Path, name: str) -> str | None:
    """The version a pointer (`current`, `candidate`) names, or None."""
    path = models_dir / name
    return path.read_text(encoding="utf-8").strip() if path.exists() else None


def set_pointer(models_dir: Path, name: str, version: str) -> None:
    if not (models_dir / version / METADATA).exists():
        raise BundleError(f"no bundle {version!r} in {models_dir}")
    _write_atomic(models_dir / name, version + "\n")


def resolve(models_dir: Path, pointer: str) -> Path:
    version = read_pointer(models_dir, pointer)
    if version is None:
        step = "train" if pointer == "candidate" else "train and evaluate"
        raise BundleError(f"{models_dir / pointer} does not exist: {step} a model first")
    return models_dir / version


def log_event(models_dir: Path, event: str, version: str, **details) -> None:
    """Append one decision to the registry log: what, when, and why."""
    record = {
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "event": event,
        "version": version,
        **details,
    }
    with (models_dir / REGISTRY).open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, sort_keys=True, default=str) + "\n")
