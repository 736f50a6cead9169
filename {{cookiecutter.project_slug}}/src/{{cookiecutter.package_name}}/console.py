"""Stage 7: what operators do from the dashboard, without a developer at hand.

- `Forms`: one-time CSRF tokens. Every form carries one; a post without a valid token is
  refused, and a token is spent by the first post, so a double submit never acts twice.
- `AuditLog`: an append-only JSON-lines file of every action: who, by which role, what,
  when and with which outcome. `{{ cookiecutter.package_name }} audit` reads it.
- `read_upload` / `check_upload` / `accept_upload`: new data, validated against the problem
  contract column by column before anything is stored; accepted rows become a new raw
  snapshot, the previous one archived.
- `Jobs`: a retrain runs as its own process (`retrain --no-collect --no-promote`), one at a
  time, its log streamed to a file the page shows line by line. It never promotes: the
  operator does, after the gate has passed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from . import bundle, data, registry
from .config import Paths, load_params, load_problem
from .errors import DataError, ProjectError
from .problem_type import PROBLEM_TYPE

FORM_MAX_AGE = 8 * 3600  # seconds a page's forms stay valid
UPLOADS = Path("data") / "uploads"  # accepted uploads as sent, for the drift check
STEP = re.compile(r"step (\d+)/(\d+): (\w+)")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Caller:
    """Who sent a request: the Basic user name (or "-"), and the role their key grants."""

    name: str
    role: str  # "viewer", "operator", or "anonymous" when the service asks for no key

    @property
    def can_act(self) -> bool:
        return self.role in {"operator", "anonymous"}


class FormError(ProjectError):
    """A form post without a valid token, or with one already spent."""


class Forms:
    """One-time form tokens, signed with the operator key (or a per-process secret when
    the service runs without keys), so another site cannot forge them."""

    def __init__(self, secret: bytes | None) -> None:
        self.signer = URLSafeTimedSerializer(secret or secrets.token_bytes(32), salt="console")

    def token(self) -> str:
        return self.signer.dumps(secrets.token_hex(16))

    def nonce(self, token: str | None) -> str:
        """The token's one-time id; FormError when it is missing, forged or expired."""
        if not token:
            raise FormError("the form has no CSRF token: reload the dashboard and try again")
        try:
            return self.signer.loads(token, max_age=FORM_MAX_AGE)
        except SignatureExpired:
            raise FormError("the form expired: reload the dashboard and try again") from None
        except BadSignature:
            raise FormError("the form's CSRF token is not valid: reload the dashboard") from None


class AuditLog:
    """Append-only: lines are added, never changed. A lock file keeps the check that a
    form's token is unspent and the line that spends it together, across workers."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def claim(self, caller: Caller, action: str, nonce: str) -> Iterator[dict]:
        """Run one action for `nonce`'s form: FormError if the form was used already. The
        action fills the yielded entry's `outcome` and `detail`; the line is written even
        when the action raises."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, open(self.path.with_suffix(".lock"), "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            earlier = next((e for e in read_audit(self.path) if e.get("form") == nonce), None)
            if earlier is not None:
                raise FormError(
                    f"this form was already submitted at {earlier['time']} "
                    f"({earlier['action']}: {earlier['outcome']}); it runs once"
                )
            entry = {"time": now(), "user": caller.name, "role": caller.role, "action": action}
            entry.update(outcome="failed", detail="", form=nonce)
            try:
                yield entry
            finally:
                self.write(entry)

    def write(self, entry: dict) -> None:
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def refused(self, caller: Caller, action: str, reason: str) -> None:
        """An action refused before it ran (no permission, bad form): logged too."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        entry = {"time": now(), "user": caller.name, "role": caller.role, "action": action}
        self.write({**entry, "outcome": "refused", "detail": reason})


def read_audit(path: Path) -> list[dict]:
    """Every entry of the audit log, oldest first; none when there is no log yet."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def audit_line(entry: dict) -> str:
    return (
        f"{entry['time']}  {entry['user']} ({entry['role']})  {entry['action']}: "
        f"{entry['outcome']}  {entry.get('detail', '')}".rstrip()
    )


def read_upload(filename: str, content: bytes) -> pd.DataFrame:
    """A CSV or Parquet upload as a frame; DataError when it is neither or cannot be read."""
    suffix = Path(filename).suffix.lower()
    try:
        if suffix == ".parquet" or content[:4] == b"PAR1":
            return pd.read_parquet(io.BytesIO(content))
        if suffix in {".csv", ".txt", ""}:
            return data.read_csv(io.BytesIO(content))
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{filename}: not a readable CSV or Parquet file ({exc})") from None
    raise DataError(f"{filename}: upload a .csv or .parquet file, not {suffix}")


@dataclass
class UploadCheck:
    """What an upload holds against the contract: rows, the problems found per column, the
    columns that are not used and are left out."""

    rows: int
    problems: list[str]
    ignored: list[str]


def check_upload(frame: pd.DataFrame, root: Path) -> UploadCheck:
    """Validate uploaded rows against problem.yaml as part of the data they join: with the
    kinds of the current snapshot's features, so they are checked as the model reads them,
    and with rules about the whole data (two classes at least, the missing share) judged on
    the whole, so a few rows of one class are welcome. The current rows met the contract
    already: what fails is in the upload."""
    paths = Paths(root)
    problem, params = load_problem(paths.problem), load_params(paths.params)
    current = data.read_raw(paths.raw)
    if frame.empty:
        return UploadCheck(0, ["the file has no rows"], [])
    columns = list(current.columns)
    absent = [c for c in columns if c not in frame]
    missing = [f"column {c!r}: missing: the current data has it" for c in absent]
    features = PROBLEM_TYPE.resolve_features(current, problem)
    # the other columns are checked too: an absent one, read as empty, is reported once
    combined = pd.concat([current, frame.reindex(columns=columns)], ignore_index=True)
    problems = data.problems(combined, problem, params, features)
    problems = [p for p in problems if not p.startswith(tuple(f"column {c!r}" for c in absent))]
    if not missing and not problems:
        problems = [f"with the current data: {why}" for why in _prepared(combined, problem, params)]
    ignored = [str(c) for c in frame.columns if c not in current.columns]
    return UploadCheck(len(frame), missing + problems, ignored)


def _prepared(combined: pd.DataFrame, problem, params) -> list[str]:
    """Why stage 3 would refuse the current data with the upload's rows (duplicated times
    of a series, too few rows of a class...), from a dry run in a scratch folder."""
    with tempfile.TemporaryDirectory() as scratch:
        try:
            PROBLEM_TYPE.prepare(combined, problem, params, Path(scratch))
        except (ProjectError, ValueError) as exc:
            return [str(exc)]
    return []


def accept_upload(frame: pd.DataFrame, filename: str, content: bytes, root: Path) -> dict:
    """Keep the upload as sent under data/uploads/ and append its rows to a new raw
    snapshot. Returns the new manifest, with `stored` naming the kept file."""
    paths = Paths(root)
    digest = hashlib.sha256(content).hexdigest()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    suffix = ".parquet" if content[:4] == b"PAR1" else ".csv"
    stored = root / UPLOADS / f"{stamp}-{digest[:12]}{suffix}"
    stored.parent.mkdir(parents=True, exist_ok=True)
    stored.write_bytes(content)
    origin = {
        "file": Path(filename).name,
        "sha256": digest,
        "stored": str(stored.relative_to(root)),
    }
    manifest = data.add_rows(frame, paths.raw, origin)
    return {**manifest, "stored": origin["stored"]}


def uploads(root: Path) -> list[str]:
    """Kept uploads, newest first, relative to the project root."""
    folder = root / UPLOADS
    files = [*folder.glob("*.csv"), *folder.glob("*.parquet")] if folder.exists() else []
    return sorted((str(f.relative_to(root)) for f in files), reverse=True)


class Jobs:
    """Background retrains, one at a time, each a process with its log in `folder`."""

    def __init__(self, root: Path, models_dir: Path, folder: Path) -> None:
        self.root, self.models_dir, self.folder = root, models_dir, folder
        self._starting = threading.Lock()
        self._running: dict[str, subprocess.Popen] = {}

    def start(self, caller: Caller) -> str:
        """Start a retrain; ProjectError when one is running already."""
        with self._starting:
            if any(p.poll() is None for p in self._running.values()) or registry.retrain_running(
                self.models_dir
            ):
                raise ProjectError("a retrain is running already: one at a time")
            self.folder.mkdir(parents=True, exist_ok=True)
            job = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)
            command = [sys.executable, "-m", __package__, "retrain", "--root", str(self.root)]
            command += ["--no-collect", "--no-promote"]
            with open(self.folder / f"{job}.log", "wb") as log:
                process = subprocess.Popen(
                    command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            self._running[job] = process
            state = {"id": job, "started_at": now(), "by": caller.name, "role": caller.role}
            self._write(job, {**state, "pid": process.pid, "exit_code": None})
            threading.Thread(target=self._wait, args=(job, process), daemon=True).start()
            return job

    def _wait(self, job: str, process: subprocess.Popen) -> None:
        code = process.wait()
        trained = bundle.read_pointer(self.models_dir, "candidate") if code != 2 else None
        state = {**self.state(job), "exit_code": code, "ended_at": now(), "candidate": trained}
        self._write(job, state)

    def _write(self, job: str, state: dict) -> None:
        staged = self.folder / f".{job}.json.tmp"
        staged.write_text(json.dumps(state), encoding="utf-8")
        os.replace(staged, self.folder / f"{job}.json")

    def state(self, job: str) -> dict:
        """The job's state as written, plus its log lines, step and status."""
        path = self.folder / f"{job}.json"
        if not re.fullmatch(r"[0-9T]+-[0-9a-f]+", job) or not path.exists():
            raise DataError(f"no job {job!r}")
        return json.loads(path.read_text(encoding="utf-8"))

    def view(self, job: str) -> dict:
        """What the job page shows: status, step, elapsed seconds, log lines, outcome."""
        state = self.state(job)
        log = (self.folder / f"{job}.log").read_text(encoding="utf-8", errors="replace")
        lines = log.splitlines()
        steps = [m.groups() for m in map(STEP.search, lines) if m]
        code = state["exit_code"]
        if (
            code is None
            and job not in self._running
            and not registry.retrain_running(self.models_dir)
        ):
            code = -1  # the service restarted while it ran and the process is gone
        end = datetime.fromisoformat(state.get("ended_at") or now())
        return {
            **state,
            "status": JOB_STATUS.get(code, "error") if code is not None else "running",
            "step": f"{steps[-1][2]} ({steps[-1][0]} of {steps[-1][1]})" if steps else "starting",
            "elapsed": (end - datetime.fromisoformat(state["started_at"])).total_seconds(),
            "lines": lines[-300:],
        }

    def latest(self) -> str | None:
        names = sorted(p.stem for p in self.folder.glob("*.json")) if self.folder.exists() else []
        return names[-1] if names else None


# the retrain command's exit codes: the gate's verdicts, and -1 for a lost process
JOB_STATUS = {0: "passed", 1: "failed", 2: "error", 3: "inconclusive", -1: "lost"}
