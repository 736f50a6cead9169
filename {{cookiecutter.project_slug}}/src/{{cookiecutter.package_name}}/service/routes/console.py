"""The console's actions: upload data, check drift, retrain, promote, roll back.

Each is a form post by an operator: the form's one-time token is checked and spent, the
action runs, and the audit log gets one line with its outcome. Results are pages, so the
console works without JavaScript.

No `from __future__ import annotations` here: FastAPI reads the form fields' annotations.
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse

from ... import console, dashboard, monitor, registry
from ...config import load_params
from ...errors import ProjectError
from ..auth import ApiKey
from ..models import ServedModel
from ..settings import Settings

Action = Callable[[dict], Awaitable[HTMLResponse]]
Token = Annotated[str | None, Form(alias="csrf")]  # the form's one-time CSRF token


class Console:
    """The operator actions of one service: its settings, forms, audit log and jobs."""

    def __init__(self, served: ServedModel, key: ApiKey, settings: Settings) -> None:
        self.served, self.key, self.settings = served, key, settings
        operator = settings.operator_key
        self.forms = console.Forms(operator.get_secret_value().encode() if operator else None)
        self.audit = console.AuditLog(settings.audit_log_path)
        self.root = settings.project_dir.resolve()
        self.jobs = console.Jobs(self.root, settings.models_dir, settings.jobs_dir)

    def unavailable(self) -> str | None:
        """Why uploads and retrains cannot run here, or None: they need the project folder
        whose models/ the service serves (an image holds only the service)."""
        if not (self.root / "configs" / "problem.yaml").is_file():
            return f"SERVICE_PROJECT_DIR ({self.root}) holds no configs/problem.yaml"
        if (self.root / "models").resolve() != self.settings.models_dir.resolve():
            return f"SERVICE_MODELS_DIR is not {self.root / 'models'}"
        return None

    async def act(self, request: Request, action: str, token: str | None, run: Action):
        """Check the caller's role and the form's token, run `run` once, log the outcome."""
        caller = self.key.caller(request)
        if not caller.can_act:
            self.audit.refused(caller, action, "the viewer role cannot act")
            return page(action, "refused", ["Only the operator key can act."], 403)
        try:
            nonce = self.forms.nonce(token)
        except console.FormError as exc:
            self.audit.refused(caller, action, str(exc))
            return page(action, "refused", [str(exc)], 403)
        try:
            with self.audit.claim(caller, action, nonce) as entry:
                return await run(entry)
        except console.FormError as exc:  # the form was spent by an earlier submit
            return page(action, "refused", [str(exc)], 409)

    async def upload(self, entry: dict, file: UploadFile) -> HTMLResponse:
        entry["detail"] = file.filename or "upload"
        if why := self.unavailable():
            return outcome(entry, "refused", [f"uploads are off: {why}"], 409)
        if registry.retrain_running(self.settings.models_dir):
            return outcome(entry, "refused", ["a retrain is running: upload after it ends"], 409)
        content = await file.read()
        try:
            frame = await asyncio.to_thread(console.read_upload, entry["detail"], content)
            check = await asyncio.to_thread(console.check_upload, frame, self.root)
        except ProjectError as exc:
            return outcome(entry, "rejected", [str(exc)], 422)
        notes = [f"{check.rows} rows"]
        if check.ignored:
            notes.append(f"columns not in the data, left out: {', '.join(check.ignored)}")
        if check.problems:
            return outcome(entry, "rejected", [*check.problems, *notes], 422)
        manifest = await asyncio.to_thread(
            console.accept_upload, frame, entry["detail"], content, self.root
        )
        notes += [
            f"new raw snapshot: {manifest['rows']} rows, sha256 {manifest['sha256'][:12]}…",
            f"the previous snapshot ({(manifest['added_to'] or '')[:12]}…) is archived",
            f"kept as {manifest['stored']} for the drift check",
        ]
        return outcome(entry, "accepted", notes)

    async def drift_check(self, entry: dict, source: str, last: int | None) -> HTMLResponse:
        uploads = console.uploads(self.root)
        if source != "log" and source not in uploads:
            return outcome(entry, "error", [f"no upload {source!r} to check"], 422)
        entry["detail"] = source if source != "log" else f"prediction log, last {last or 'all'}"
        thresholds = self.root / "configs" / "params.yaml"
        if not thresholds.is_file():
            return outcome(entry, "refused", [f"the drift check needs {thresholds}"], 409)
        try:
            params = load_params(thresholds)
            report = await asyncio.to_thread(
                monitor.run,
                self.settings.models_dir,
                self.settings.reports_dir / "monitoring",
                params.monitoring,
                log_path=self.settings.prediction_log_path,
                data_path=self.root / source if source != "log" else None,
                last=last,
            )
        except ProjectError as exc:
            return outcome(entry, "error", [str(exc)], 422)
        lines = [report["summary"], *[f"drifted: {name}" for name in report.get("drifted", [])]]
        return outcome(entry, report["verdict"], lines)

    async def retrain(self, entry: dict) -> HTMLResponse:
        if why := self.unavailable():
            return outcome(entry, "refused", [f"retraining is off: {why}"], 409)
        try:
            job = self.jobs.start(console.Caller(entry["user"], entry["role"]))
        except ProjectError as exc:
            return outcome(entry, "refused", [str(exc)], 409)
        entry.update(outcome="started", detail=f"job {job}")
        return RedirectResponse(f"/dashboard/jobs/{job}", 303)

    async def move(self, entry: dict, version: str, confirm: str | None) -> HTMLResponse:
        """Promote or roll back (the entry's action) to `version`, once confirmed. The
        registry checks the gate: a promotion needs a passed one, a rollback an earlier
        version that passed."""
        entry["detail"], action = version, entry["action"]
        if confirm != "yes":
            return outcome(entry, "refused", [f"tick the box to confirm the {action}"], 422)
        reason = f"{action} in the console by {entry['user']} ({entry['role']})"
        try:
            if action == "promote":
                registry.promote(self.settings.models_dir, version, reason)
            else:
                registry.rollback(self.settings.models_dir, reason, to=version)
        except (ProjectError, OSError) as exc:  # OSError: a read-only models volume
            return outcome(entry, "refused", [str(exc)], 409)
        return outcome(entry, "done", await self.follow(version))

    async def follow(self, version: str) -> list[str]:
        """Serve the new pointer now, not at the next check; say what is served."""
        try:
            await self.served.reload()
        except Exception as exc:
            return [f"models/current -> {version}, but the service could not load it: {exc}"]
        return [f"models/current -> {version}; the service now answers with it"]


def outcome(entry: dict, result: str, lines: list[str], status: int = 200) -> HTMLResponse:
    entry["outcome"] = result
    if lines and result not in {"accepted", "done"}:
        entry["detail"] = f"{entry['detail']}: {lines[0]}" if entry["detail"] else lines[0]
    return page(entry["action"], result, lines, status)


def page(action: str, result: str, lines: list[str], status: int = 200) -> HTMLResponse:
    return HTMLResponse(dashboard.result(action, result, lines), status)


def add_routes(app: FastAPI, served: ServedModel, key: ApiKey, settings: Settings) -> Console:
    ops = Console(served, key, settings)

    @app.post("/dashboard/upload", response_class=HTMLResponse)
    async def upload(request: Request, file: Annotated[UploadFile, File()], csrf: Token = None):
        """Upload CSV or Parquet rows; if they meet the contract, a new raw snapshot."""
        return await ops.act(request, "upload", csrf, lambda e: ops.upload(e, file))

    @app.post("/dashboard/drift-check", response_class=HTMLResponse)
    async def drift_check(
        request: Request,
        source: Annotated[str, Form()] = "log",
        last: Annotated[int | None, Form(ge=1)] = None,
        csrf: Token = None,
    ):
        """The drift check on the prediction log's last records, or on an upload."""
        return await ops.act(
            request, "drift check", csrf, lambda e: ops.drift_check(e, source, last)
        )

    @app.post("/dashboard/retrain", response_class=HTMLResponse)
    async def retrain(request: Request, csrf: Token = None):
        """Start a retrain on the current snapshot; it never promotes by itself."""
        return await ops.act(request, "retrain", csrf, ops.retrain)

    @app.post("/dashboard/promote", response_class=HTMLResponse)
    async def promote(
        request: Request,
        version: Annotated[str, Form()],
        confirm: Annotated[str | None, Form()] = None,
        csrf: Token = None,
    ):
        """Serve a version that passed the gate, once the operator confirms."""
        return await ops.act(request, "promote", csrf, lambda e: ops.move(e, version, confirm))

    @app.post("/dashboard/rollback", response_class=HTMLResponse)
    async def rollback(
        request: Request,
        version: Annotated[str, Form()],
        confirm: Annotated[str | None, Form()] = None,
        csrf: Token = None,
    ):
        """Serve an earlier version that passed the gate, once the operator confirms."""
        return await ops.act(request, "rollback", csrf, lambda e: ops.move(e, version, confirm))

    return ops
