"""Stage 7: the model registry: versions on disk, the `current` pointer, promotion, rollback.

Every bundle stays in `models/<version>/`; `models/current` names the served one and is
replaced atomically, so a reader sees the old version or the new one, never half of it.
`models/registry.jsonl` records each decision (trained, promoted, rejected, inconclusive,
rolled back, signed); rollback follows it back. Promotion always goes through `promote`,
and every version name through `bundle.locate`: a bundle inside `models/`, never a path.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
from collections.abc import Iterator
from pathlib import Path

from . import bundle
from .errors import ProjectError

log = logging.getLogger(__name__)

PROMOTED, ROLLED_BACK, SIGNED = "promoted", "rolled_back", "signed"
RETRAIN_LOCK = ".retrain.lock"  # held by the one retrain that may run at a time
REJECTED, INCONCLUSIVE = "rejected", "inconclusive"  # gate verdicts that promote nothing


def history(models_dir: Path) -> list[dict]:
    """Every logged decision, oldest first."""
    path = models_dir / bundle.REGISTRY
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def evaluation(models_dir: Path, version: str) -> dict | None:
    """The version's signed evaluation; None when it has none or its signature fails."""
    return bundle.read_evaluation(models_dir / version)


def verdict(report: dict) -> str:
    """passed, failed or inconclusive; reports written before verdicts had three outcomes
    say only whether the candidate passed."""
    gate = report["gate"]
    return gate.get("verdict") or ("passed" if gate["passed"] else "failed")


def versions(models_dir: Path) -> list[dict]:
    """Each bundle with its creation time, model, gate verdict and pointers, newest first."""
    current = bundle.read_pointer(models_dir, "current")
    candidate = bundle.read_pointer(models_dir, "candidate")
    rows = []
    for meta_path in models_dir.glob(f"*/{bundle.METADATA}"):
        try:
            meta = bundle.read_metadata(meta_path.parent)
            report = evaluation(models_dir, meta_path.parent.name)
        except bundle.BundleError as exc:
            log.warning("not listed: %s", exc)
            continue
        primary = report["primary"] if report else None
        rows.append(
            {
                "version": meta["version"],
                "created_at": meta["created_at"],
                "model": meta["model"]["name"],
                "mlflow_run_id": meta.get("mlflow_run_id"),
                "metric": primary["metric"] if primary else None,
                "test_score": primary["candidate"] if primary else None,
                "gate": None if report is None else report["gate"]["passed"],
                "verdict": None if report is None else verdict(report),
                "current": meta["version"] == current,
                "candidate": meta["version"] == candidate,
            }
        )
    return sorted(rows, key=lambda row: row["created_at"], reverse=True)


def _served_stack(models_dir: Path) -> list[str]:
    """Versions in the order they were put into service, with rollbacks undone."""
    stack: list[str] = []
    for event in history(models_dir):
        if event["event"] == PROMOTED and (not stack or stack[-1] != event["version"]):
            stack.append(event["version"])
        elif event["event"] == ROLLED_BACK and stack:
            version = event["version"]
            if version in stack:  # back to it: what was served after it is undone
                del stack[len(stack) - stack[::-1].index(version) :]
            else:
                stack[-1] = version
    return stack


def record(models_dir: Path, event: str, version: str, reason: str, **details) -> None:
    """Log a gate verdict that promotes nothing (REJECTED or INCONCLUSIVE)."""
    bundle.log_event(models_dir, event, version, reason=reason, **details)


def promote(models_dir: Path, version: str, reason: str, force: bool = False, **details) -> None:
    """Point `current` at `version` after verifying it; it must have passed the gate.

    `details` (metric, scores) go into the registry log with the reason."""
    bundle.verify(bundle.locate(models_dir, version))
    report = evaluation(models_dir, version)
    if not force and not (report and verdict(report) == "passed"):
        raise ProjectError(
            f"{version} has not passed the evaluation gate; run `evaluate` on it, "
            "or pass --force to promote it anyway (the reason is logged)"
        )
    bundle.set_pointer(models_dir, "current", version)
    bundle.log_event(models_dir, PROMOTED, version, reason=reason, forced=force, **details)


def rollback(models_dir: Path, reason: str, to: str | None = None) -> str:
    """Return `current` to the version served before it, or to `to`: an earlier version
    that passed the gate. Returns the version now served."""
    current = bundle.read_pointer(models_dir, "current")
    if to is None:
        stack = _served_stack(models_dir)
        if len(stack) < 2 or stack[-1] != current:
            raise ProjectError(
                "nothing to roll back to: no earlier promoted version in the registry"
            )
        to = stack[-2]
    else:
        _check_rollback_target(models_dir, to, current)
    bundle.verify(bundle.locate(models_dir, to))
    bundle.set_pointer(models_dir, "current", to)
    bundle.log_event(models_dir, ROLLED_BACK, to, reason=reason, replaced=current)
    return to


def _check_rollback_target(models_dir: Path, version: str, current: str | None) -> None:
    """A version to roll back to: not the served one, older than it, and passed the gate."""
    rows = {row["version"]: row for row in versions(models_dir)}
    if version not in rows:
        raise ProjectError(f"rollback: no bundle {version!r} in {models_dir}")
    if version == current:
        raise ProjectError(f"rollback: {version} is already served")
    if current in rows and rows[version]["created_at"] > rows[current]["created_at"]:
        raise ProjectError(f"rollback: {version} is newer than the served {current}; promote it")
    if rows[version]["verdict"] != "passed":
        raise ProjectError(f"rollback: {version} did not pass the evaluation gate")


@contextlib.contextmanager
def retrain_lock(models_dir: Path) -> Iterator[None]:
    """Held while a retrain runs: a second one, from the CLI or the console, is refused."""
    models_dir.mkdir(parents=True, exist_ok=True)
    with open(models_dir / RETRAIN_LOCK, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ProjectError(
                "another retrain is running in this project; wait for it to finish"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def retrain_running(models_dir: Path) -> bool:
    """Whether a retrain holds the lock now."""
    try:
        with retrain_lock(models_dir):
            return False
    except ProjectError:
        return True


def sign(models_dir: Path, versions: list[str], trust: bool = False) -> None:
    """Sign `versions` with the current key, once all of them are checked: their files must
    match their hashes and, unless `trust`, their signature must verify under the current
    or the previous key. `trust` is for bundles made before signing; the log records it.
    An `evaluation.json` is signed again when its signature verifies, or with `trust`."""
    check = bundle.verify_files if trust else bundle.verify
    checked = [(version, check(bundle.locate(models_dir, version))) for version in versions]
    for version, metadata in checked:
        bundle_dir = models_dir / version
        bundle.sign(bundle_dir, metadata)
        if (bundle_dir / bundle.EVALUATION).exists() and (
            trust or bundle.read_evaluation(bundle_dir) is not None
        ):
            bundle.sign_evaluation(bundle_dir)
        bundle.log_event(
            models_dir, SIGNED, version, trusted=trust, content_sha256=metadata["content_sha256"]
        )


def bundle_names(models_dir: Path) -> list[str]:
    """The folder names of every bundle in `models_dir`, sorted."""
    names = (path.parent.name for path in models_dir.glob(f"*/{bundle.METADATA}"))
    return sorted(name for name in names if bundle.VERSION_NAME.fullmatch(name))
