"""Model bundles: save, verify and load them, and keep the pointers and the registry log.

A bundle is a folder `models/<version>/` holding the candidate and the baseline in skops
format (loading it executes no code), the candidate's estimator in ONNX for fast serving
when it converts, the reference statistics and `metadata.json`. The metadata records a
sha256 per file and a content hash over all of it (`content_sha256`), checked before
loading. Pointers (`current`, `candidate`) and commands name bundles by version only: a
plain name of a folder directly inside `models/`, never a path.

The file `signature` holds an HMAC-SHA256 of the content hash under a secret key:
`MODEL_SIGNING_KEY`, else the file `.model-signing-key` next to `models/`, which the first
`train` creates. During a key rotation `MODEL_SIGNING_KEY_PREVIOUS` is accepted too, until
`models sign --all` has signed every bundle with the new key. Every load checks it.

What signing protects against: anyone who can write `models/` (or the volume or bucket it
comes from) but does not hold the key. Swapped or edited files, forged metadata with
recomputed hashes, and a bundle copied under another version's name are all refused. What
it does not protect against: a holder of the key, who can sign anything; serving an older,
genuinely signed bundle by moving the `current` pointer (the registry log records every
promotion and rollback, so check it); and it is no encryption: anyone who can read the
bundle can read the model.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import skops.io as sio

from .errors import ProjectError

log = logging.getLogger(__name__)

METADATA = "metadata.json"
MODEL = "model.skops"
BASELINE = "baseline.skops"
REFERENCE = "reference.json"
ONNX = "model.onnx"
REQUIRED = (MODEL, BASELINE, REFERENCE)
REGISTRY = "registry.jsonl"
SIGNATURE = "signature"
KEY_ENV, PREVIOUS_KEY_ENV = "MODEL_SIGNING_KEY", "MODEL_SIGNING_KEY_PREVIOUS"
KEY_FILE = ".model-signing-key"  # in the project root, the parent of models/
VERSION_NAME = re.compile(r"\w[\w.-]*", re.ASCII)  # a folder name: no separator, no . or ..
TRUSTED_MODULES = ("builtins", "collections", "numpy", "scipy", "sklearn", __package__)


class BundleError(ProjectError):
    """A bundle is missing, incomplete, unsigned or does not match its recorded hashes."""


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


def locate(models_dir: Path, version: str) -> Path:
    """The folder of bundle `version`: a plain name of a bundle directly inside `models_dir`,
    after resolving links. Every path built from a version name comes from here."""
    if not VERSION_NAME.fullmatch(version):
        raise BundleError(f"{version[:80]!r} is not a version name; see `models list`")
    path = (models_dir / version).resolve()
    if path.parent != models_dir.resolve() or not (path / METADATA).is_file():
        raise BundleError(f"no bundle {version!r} in {models_dir}")
    return models_dir / version


def signing_key(models_dir: Path, create: bool = False) -> bytes:
    """The key new signatures use: MODEL_SIGNING_KEY, else the project's key file, which
    `create` writes (mode 0600) when neither exists."""
    if key := os.environ.get(KEY_ENV):
        return key.encode()
    path = models_dir.parent / KEY_FILE
    if create and not path.exists():
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
            out.write(secrets.token_hex(32) + "\n")
        log.warning("created the model signing key %s; in production set %s", path, KEY_ENV)
    try:
        key = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"no model signing key: set {KEY_ENV} ({path}: {exc})") from None
    if not key:
        raise BundleError(f"{path} is empty: set {KEY_ENV} or put the signing key there")
    return key.encode()


def _signature(key: bytes, content_sha256: str) -> bytes:
    return hmac.new(key, content_sha256.encode(), hashlib.sha256).hexdigest().encode()


def sign(bundle_dir: Path, metadata: dict) -> None:
    """Write the bundle's `signature` with the current key, replacing it in one step."""
    signature = _signature(signing_key(bundle_dir.parent, create=True), metadata["content_sha256"])
    _write_atomic(bundle_dir / SIGNATURE, signature.decode() + "\n")


def save(
    models_dir: Path, model, baseline, metadata: dict, reference: dict, onnx: bytes | None = None
) -> str:
    """Write and sign a new bundle and return its version. A half-written bundle is never
    visible."""
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
        sign(staging, full)
        if not (models_dir / version).exists():  # else: the same content, saved this second
            os.replace(staging, models_dir / version)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return version


def read_metadata(bundle_dir: Path) -> dict:
    """A bundle's metadata.json as it stands, not yet verified."""
    try:
        return json.loads((bundle_dir / METADATA).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{bundle_dir}: no {METADATA}; not a model bundle") from None
    except (OSError, ValueError) as exc:
        raise BundleError(f"{bundle_dir}: unreadable {METADATA}: {exc}") from None


def verify_files(bundle_dir: Path) -> dict:
    """Check every file against the metadata's hashes and the folder's name against the
    version; return the metadata. The signature is `verify`'s."""
    locate(bundle_dir.parent, bundle_dir.name)
    metadata = read_metadata(bundle_dir)
    files = metadata.get("files", {})
    for name in sorted({*REQUIRED, *files}):
        path = bundle_dir / name
        if not path.exists():
            raise BundleError(f"{bundle_dir}: {name} is missing")
        if sha256_file(path) != files.get(name):
            raise BundleError(f"{bundle_dir}: {name} does not match its recorded sha256")
    if _content_hash(files, metadata) != metadata.get("content_sha256"):
        raise BundleError(f"{bundle_dir}: metadata does not match its content hash")
    if metadata.get("version") != bundle_dir.name:
        raise BundleError(
            f"{bundle_dir}: its metadata names version {metadata.get('version')!r}; "
            "a bundle is served only under its own name"
        )
    return metadata


def verify(bundle_dir: Path) -> dict:
    """Check the files' hashes and the signature (current or previous key); return the
    metadata."""
    metadata = verify_files(bundle_dir)
    keys = [signing_key(bundle_dir.parent)]
    if previous := os.environ.get(PREVIOUS_KEY_ENV):
        keys.append(previous.encode())
    path = bundle_dir / SIGNATURE
    signature = path.read_bytes().strip() if path.exists() else b""
    expected = [_signature(key, metadata["content_sha256"]) for key in keys]
    if not any(hmac.compare_digest(signature, each) for each in expected):
        fix = f"check it and run `models sign {bundle_dir.name} --trust`"
        if signature:
            fix = f"set the key it was signed with ({KEY_ENV} or {PREVIOUS_KEY_ENV}), or {fix}"
        state = "has a signature that matches no signing key" if signature else "is not signed"
        raise BundleError(f"{bundle_dir} {state}: {fix}")
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
    """The version a pointer (`current`, `candidate`) names, or None when there is none."""
    path = models_dir / name
    if not path.exists():
        return None
    try:
        version = path.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError:
        raise BundleError(f"{path} is not text; point it with `models promote`") from None
    if not VERSION_NAME.fullmatch(version):
        raise BundleError(f"{path} holds {version[:80]!r}, not a version name; see `models list`")
    return version


def set_pointer(models_dir: Path, name: str, version: str) -> None:
    locate(models_dir, version)
    _write_atomic(models_dir / name, version + "\n")


def resolve(models_dir: Path, pointer: str) -> Path:
    """The folder of the bundle a pointer names."""
    version = read_pointer(models_dir, pointer)
    if version is None:
        step = "train" if pointer == "candidate" else "train and evaluate"
        raise BundleError(f"{models_dir / pointer} does not exist: {step} a model first")
    return locate(models_dir, version)


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
