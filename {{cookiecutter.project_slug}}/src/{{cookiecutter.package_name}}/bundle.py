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
`models sign --all` has signed every bundle with the new key. Every load checks it, before
any file is read, and loads the very bytes it hashed. `evaluate` writes `evaluation.json`
with `evaluation.signature`, an HMAC-SHA256 of its bytes under the same key; an evaluation
whose signature does not verify counts as none, so promotion needs --force.

What signing protects against: anyone who can write `models/` (or the volume or bucket it
comes from) but does not hold the key. Swapped or edited files, forged metadata with
recomputed hashes, and a bundle copied under another version's name are all refused. What
it does not protect against: a holder of the key, who can sign anything; serving an older,
genuinely signed bundle by moving the `current` pointer (the registry log records every
promotion and rollback, so check it); and it is no encryption: anyone who can read the
bundle can read the model.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import shutil
import stat
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
FILES = (*REQUIRED, ONNX)  # the only names metadata may list
EVALUATION, EVALUATION_SIGNATURE = "evaluation.json", "evaluation.signature"
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


def _read(path: Path, limit: int = -1) -> bytes:
    """The bytes of a regular file (never a pipe or a device), opened once; at most `limit`."""
    try:
        handle = os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb")
    except FileNotFoundError:
        raise BundleError(f"{path} is missing") from None
    with handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise BundleError(f"{path} is not a regular file")
        return handle.read(limit)


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
    `create` writes (mode 0600) when neither exists. A key file that another user owns or
    others may write is refused."""
    if key := os.environ.get(KEY_ENV):
        return key.encode()
    path = models_dir.parent / KEY_FILE
    if create and not path.exists():
        _create_key(path)
    try:
        with path.open("rb") as handle:
            info = os.fstat(handle.fileno())
            key = handle.read(4096).decode().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"no model signing key: set {KEY_ENV} ({path}: {exc})") from None
    if info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise BundleError(
            f"{path} is not owned by this user or is writable by others: "
            f"fix it (chmod 600) or set {KEY_ENV}"
        )
    if not key:
        raise BundleError(f"{path} is empty: set {KEY_ENV} or put the signing key there")
    return key.encode()


def _create_key(path: Path) -> None:
    """Write a new random key to `path`, mode 0600, unless another process just did. The
    key goes into a private file first, then is linked into place, so `path` is never seen
    empty."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.unlink(missing_ok=True)
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
            out.write(secrets.token_hex(32) + "\n")
        os.link(tmp, path)
    except FileExistsError:
        return  # another `train` created it first: use that one
    except OSError as exc:
        raise BundleError(f"cannot create {path} ({exc.strerror}): set {KEY_ENV}") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    log.warning("created the model signing key %s; in production set %s", path, KEY_ENV)


def _signature(key: bytes, message: str | bytes) -> bytes:
    message = message.encode() if isinstance(message, str) else message
    return hmac.new(key, message, hashlib.sha256).hexdigest().encode()


def _signed(bundle_dir: Path, signature_file: str, message: str | bytes) -> bool:
    """Whether `signature_file` holds the signature of `message` under the current or the
    previous key."""
    keys = [signing_key(bundle_dir.parent)]
    if previous := os.environ.get(PREVIOUS_KEY_ENV):
        keys.append(previous.encode())
    path = bundle_dir / signature_file
    signature = _read(path, limit=256).strip() if path.exists() else b""
    return any(hmac.compare_digest(signature, _signature(key, message)) for key in keys)


def sign(bundle_dir: Path, metadata: dict) -> None:
    """Write the bundle's `signature` with the current key, replacing it in one step."""
    signature = _signature(signing_key(bundle_dir.parent, create=True), metadata["content_sha256"])
    _write_atomic(bundle_dir / SIGNATURE, signature.decode() + "\n")


def write_evaluation(bundle_dir: Path, report: dict) -> None:
    """Write `evaluation.json` beside the bundle and sign it."""
    write_json(bundle_dir / EVALUATION, report)
    sign_evaluation(bundle_dir)


def sign_evaluation(bundle_dir: Path) -> None:
    """Write `evaluation.signature` for the bundle's `evaluation.json` as it is now."""
    signature = _signature(signing_key(bundle_dir.parent), _read(bundle_dir / EVALUATION))
    _write_atomic(bundle_dir / EVALUATION_SIGNATURE, signature.decode() + "\n")


def read_evaluation(bundle_dir: Path) -> dict | None:
    """The bundle's test-set evaluation, or None when it has none, or none signed for it:
    an unsigned or edited `evaluation.json`, or one copied from another bundle, counts as
    no evaluation, with a warning."""
    path = bundle_dir / EVALUATION
    if not path.exists():
        return None
    data = _read(path)
    report = json.loads(data) if _signed(bundle_dir, EVALUATION_SIGNATURE, data) else None
    if not isinstance(report, dict) or report.get("version") != bundle_dir.name:
        log.warning("%s is not signed for this bundle: ignored, as if not evaluated", path)
        return None
    return report


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
    """A bundle's metadata.json as it stands, not yet verified: a JSON object."""
    path = bundle_dir / METADATA
    if not path.exists():
        raise BundleError(f"{bundle_dir}: no {METADATA}; not a model bundle")
    try:
        metadata = json.loads(_read(path, limit=1 << 20))
    except (OSError, ValueError) as exc:
        raise BundleError(f"{bundle_dir}: unreadable {METADATA}: {exc}") from None
    if not isinstance(metadata, dict):
        raise BundleError(f"{bundle_dir}: {METADATA} is not a JSON object")
    return metadata


def _checked_metadata(bundle_dir: Path) -> dict:
    """The metadata, once its file list, content hash and version are consistent; no file
    of the bundle is read yet."""
    locate(bundle_dir.parent, bundle_dir.name)
    metadata = read_metadata(bundle_dir)
    files = metadata.get("files")
    if (
        not isinstance(files, dict)
        or not set(REQUIRED) <= files.keys() <= set(FILES)
        or not all(isinstance(digest, str) for digest in files.values())
    ):
        names = f"{', '.join(REQUIRED)} and optionally {ONNX}"
        raise BundleError(f"{bundle_dir}: the files in {METADATA} must be {names}")
    if _content_hash(files, metadata) != metadata.get("content_sha256"):
        raise BundleError(f"{bundle_dir}: metadata does not match its content hash")
    if metadata.get("version") != bundle_dir.name:
        raise BundleError(
            f"{bundle_dir}: its metadata names version {metadata.get('version')!r}; "
            "a bundle is served only under its own name"
        )
    return metadata


def _read_files(bundle_dir: Path, metadata: dict) -> dict[str, bytes]:
    """Each file the metadata lists, read once and checked against its sha256."""
    contents = {}
    for name, digest in sorted(metadata["files"].items()):
        contents[name] = _read(bundle_dir / name)
        if hashlib.sha256(contents[name]).hexdigest() != digest:
            raise BundleError(f"{bundle_dir}: {name} does not match its recorded sha256")
    return contents


def _check_signature(bundle_dir: Path, metadata: dict) -> None:
    if not _signed(bundle_dir, SIGNATURE, metadata["content_sha256"]):
        signed = (bundle_dir / SIGNATURE).exists()
        fix = f"check it and run `models sign {bundle_dir.name} --trust`"
        if signed:
            fix = f"set the key it was signed with ({KEY_ENV} or {PREVIOUS_KEY_ENV}), or {fix}"
        state = "has a signature that matches no signing key" if signed else "is not signed"
        raise BundleError(f"{bundle_dir} {state}: {fix}")


def verify_files(bundle_dir: Path) -> dict:
    """Check every file against the metadata's hashes and the folder's name against the
    version; return the metadata. The signature is `verify`'s."""
    metadata = _checked_metadata(bundle_dir)
    _read_files(bundle_dir, metadata)
    return metadata


def verify(bundle_dir: Path) -> dict:
    """Check the signature (current or previous key), then the files' hashes; return the
    metadata."""
    return _verified(bundle_dir)[0]


def _verified(bundle_dir: Path) -> tuple[dict, dict[str, bytes]]:
    metadata = _checked_metadata(bundle_dir)
    _check_signature(bundle_dir, metadata)
    return metadata, _read_files(bundle_dir, metadata)


def _load_skops(name: str, data: bytes):
    untrusted = sio.get_untrusted_types(data=data)
    unexpected = [t for t in untrusted if t.split(".")[0] not in TRUSTED_MODULES]
    if unexpected:
        raise BundleError(f"{name}: refusing to load unexpected types: {', '.join(unexpected)}")
    return sio.loads(data, trusted=untrusted)


def load(bundle_dir: Path) -> Bundle:
    """Verify a bundle and load it from the very bytes that were verified."""
    metadata, contents = _verified(bundle_dir)
    return Bundle(
        version=metadata["version"],
        path=bundle_dir,
        model=_load_skops(f"{bundle_dir}/{MODEL}", contents[MODEL]),
        baseline=_load_skops(f"{bundle_dir}/{BASELINE}", contents[BASELINE]),
        metadata=metadata,
        reference=json.loads(contents[REFERENCE]),
        onnx=contents.get(ONNX),
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
