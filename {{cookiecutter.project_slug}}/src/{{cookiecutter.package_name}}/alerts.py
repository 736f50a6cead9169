"""Stage 7: the alerts on the operator dashboard.

Each alert says what is wrong now, with its numbers; links to the section of
`docs/runbook.md` that explains it (`anchor` of the section title); and names the console
action that answers it, or says to call the model owners (`docs/roles-and-responsibilities.md`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from html import escape
from pathlib import Path

from markdown_it import MarkdownIt
from mdit_py_plugins.anchors import anchors_plugin

from . import registry, trends

DRIFT_ALARM, NOT_ENOUGH, GATE_FAILURE = "Drift alarm", "Not enough data", "Evaluation gate failure"
NOT_READY, HIGH_LATENCY = "Service not ready", "High latency"
{%- if cookiecutter.problem_type == "anomaly_detection" %}
TOO_MANY_FLAGS = "Too many anomaly flags (alert fatigue)"
TOO_FEW_FLAGS = "Too few flags: missed faults"
ALERTS = (
    DRIFT_ALARM,
    NOT_ENOUGH,
    GATE_FAILURE,
    NOT_READY,
    HIGH_LATENCY,
    TOO_MANY_FLAGS,
    TOO_FEW_FLAGS,
)
{%- elif cookiecutter.problem_type == "forecasting" %}
LEVEL_SHIFT = "Level shift"
ALERTS = (DRIFT_ALARM, NOT_ENOUGH, GATE_FAILURE, NOT_READY, HIGH_LATENCY, LEVEL_SHIFT)
{%- elif cookiecutter.problem_type == "text_classification" %}
TEXT_FAILURES = "Text-specific failures"
ALERTS = (DRIFT_ALARM, NOT_ENOUGH, GATE_FAILURE, NOT_READY, HIGH_LATENCY, TEXT_FAILURES)
{%- else %}
ALERTS = (DRIFT_ALARM, NOT_ENOUGH, GATE_FAILURE, NOT_READY, HIGH_LATENCY)
{%- endif %}
ACTIONS = ("drift-check", "upload", "retrain", "promote", "rollback")  # or None: call
LONGEST = 240  # characters of a message


@dataclass(frozen=True)
class Alert:
    name: str  # a section title of docs/runbook.md, one of ALERTS
    severity: str  # "bad" or "warn"
    message: str  # what is wrong now, one line
    runbook: str  # the id of that section in `runbook_html`
    action: str | None  # the console action that answers it (ACTIONS); None: call the owners
    action_hint: str  # what to do in the console, or whom to call


def anchor(title: str) -> str:
    """The id of a runbook heading, as GitHub makes it: lower case, spaces to hyphens,
    punctuation dropped."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower().replace(" ", "-"))


def runbook_html(docs_dir: Path) -> str:
    """docs/runbook.md as HTML, each section heading with its `anchor` as id. Raw HTML in
    the Markdown is shown as text, not run, and no javascript: or vbscript: link is made."""
    path = docs_dir / "runbook.md"
    if not path.exists():
        return f"<p>{escape(str(path))} is not deployed with this service.</p>"
    markdown = MarkdownIt("commonmark", {"html": False}).use(
        anchors_plugin, min_level=1, max_level=3, slug_func=anchor
    )
    return markdown.render(path.read_text(encoding="utf-8"))


def _alert(name: str, severity: str, message: str, action: str | None, hint: str) -> Alert:
    line = " ".join(message.split())
    line = line if len(line) <= LONGEST else line[: LONGEST - 1] + "…"
    return Alert(name, severity, line, anchor(name), action, hint)


def _service(served) -> list[Alert]:
    if served.predictor is None:
        return [
            _alert(
                NOT_READY,
                "bad",
                f"no model is served: {served.reason}",
                "rollback",
                "Roll back to an earlier version that passed the gate; if the service is "
                "still not ready after the rollback, call the model owners with this message.",
            )
        ]
    if served.reload_error:
        return [
            _alert(
                NOT_READY,
                "warn",
                f"the previous model still serves; the new one failed to load: "
                f"{served.reload_error}",
                "rollback",
                "Roll back, or promote another version that passed the gate; if the new "
                "bundle is refused again, call the model owners with this message.",
            )
        ]
    return []


def _summary(report: dict) -> str:
    when = report.get("created_at", "an unknown time")
    summary = report.get("summary") or f"drift in {', '.join(report.get('drifted', []))}"
    return f"monitor run {when}: {summary}"


def _drift(report: dict | None) -> list[Alert]:
    if report is None:
        return []
    verdict = trends.verdict(report)
    if verdict == "not enough data":
        return [
            _alert(
                NOT_ENOUGH,
                "warn",
                _summary(report),
                "drift-check",
                "Run the drift check on a wider window, or on an uploaded file of recent "
                "rows. Not enough data is not a pass.",
            )
        ]
    if verdict != "drift":
        return []
    alarm = _alert(
        DRIFT_ALARM,
        "bad",
        _summary(report),
        "upload",
        "Find the cause first: an upstream bug goes to the data owner. If the world changed, "
        "upload labelled recent data, retrain, and promote once the gate passes; with no "
        "labelled data to retrain on, call the model owners.",
    )
{%- if cookiecutter.problem_type in ("anomaly_detection", "forecasting", "text_classification") %}
    return [alarm, *_type_alerts(report)]
{%- else %}
    return [alarm]
{%- endif %}
{%- if cookiecutter.problem_type == "anomaly_detection" %}


def _type_alerts(report: dict) -> list[Alert]:
    """A flagged share far from training's: the predictions' top bin, from the threshold
    up, holds the flagged readings."""
    predictions = report["predictions"]
    shares = predictions.get("distribution")
    if predictions.get("status") != "drift" or not shares:
        return []
    before, now = shares["reference"][-1], shares["recent"][-1]
    message = (
        f"flagged share {before:.1%} in training, {now:.1%} in the monitor run of "
        f"{report.get('created_at')} (predictions PSI {predictions['psi']:.2f})"
    )
    if now > before:
        return [
            _alert(
                TOO_MANY_FLAGS,
                "warn",
                message,
                "upload",
                "A new product line or changed operation: upload readings of the new "
                "normal, retrain, promote once the gate passes. One machine only: a fault "
                "or a sensor, not a retrain.",
            )
        ]
    return [
        _alert(
            TOO_FEW_FLAGS,
            "warn",
            message,
            "upload",
            "Upload labelled readings of the missed faults and retrain; a kind of fault the "
            "detector does not see goes to the model owners.",
        )
    ]
{%- elif cookiecutter.problem_type == "forecasting" %}


def _type_alerts(report: dict) -> list[Alert]:
    """The level of the values drifted: the series moved to a new level."""
    levels = [r for r in report["features"] if r["name"] == "level" and r["status"] == "drift"]
    return [
        _alert(
            LEVEL_SHIFT,
            "warn",
            f"level: mean {r['mean_reference']:.4g} at the end of training, "
            f"{r['mean_recent']:.4g} now; {'; '.join(r['reasons'])}",
            "upload",
            "A real, lasting shift: upload the series once a few seasons of the new level "
            "exist, retrain, promote once the gate passes. A data error: call the data owner.",
        )
        for r in levels
    ]
{%- elif cookiecutter.problem_type == "text_classification" %}


def _type_alerts(report: dict) -> list[Alert]:
    """A text check drifted: new words, slang, another language or other lengths."""
    texts = [r for r in report["features"] if r["kind"] == "text" and r["status"] == "drift"]
    return [
        _alert(
            TEXT_FAILURES,
            "warn",
            f"{r['name']}: {'; '.join(r['reasons'])}",
            "upload",
            "New products or slang: upload labelled recent texts, retrain, promote once the "
            "gate passes. Another language: call the model owners and the product owner.",
        )
        for r in texts
    ]
{%- endif %}


def _gate(history: list[dict]) -> list[Alert]:
    """Gate verdicts that promoted nothing since the serving model was put into service."""
    start = 0
    for index, event in enumerate(history):
        if event["event"] in (registry.PROMOTED, registry.ROLLED_BACK):
            start = index + 1
    failed = (registry.REJECTED, registry.INCONCLUSIVE)
    failures = [event for event in history[start:] if event["event"] in failed]
    if not failures:
        return []
    last = failures[-1]
    message = f"{last['version']} {last['event']} at {last.get('time')}: {last.get('reason')}"
    if len(failures) > 1:
        return [
            _alert(
                GATE_FAILURE,
                "bad",
                f"{len(failures)} candidates failed since the last promotion; {message}",
                None,
                "The serving model stays. The gate failed again: call the model owners; do not "
                "force a promotion.",
            )
        ]
    if last["event"] == registry.INCONCLUSIVE:
        return [
            _alert(
                GATE_FAILURE,
                "warn",
                message,
                "upload",
                "The serving model stays. The test set is too small to judge: upload more "
                "labelled data, then retrain. If it stays inconclusive, call the model owners.",
            )
        ]
    return [
        _alert(
            GATE_FAILURE,
            "bad",
            message,
            "drift-check",
            "The serving model stays. Run the drift check to see whether the data changed; "
            "a second failure goes to the model owners.",
        )
    ]


def _milliseconds(low: float, high: float) -> str:
    if math.isinf(high):
        return f"above {low * 1000:g} ms (the top bucket)"
    return f"between {low * 1000:g} and {high * 1000:g} ms"


def _latency(samples, budget: float) -> list[Alert]:
    """The p95 latency of the last traffic sample over the budget. The histogram bounds it
    by two bucket edges: over the budget for sure (bad) or possibly (warn)."""
    recent = list(samples or [])
    last = recent[-1] if recent else None
    if last is None or last["p95"] is None or last["p95"] <= budget:
        return []
    return [
        _alert(
            HIGH_LATENCY,
            "bad" if last["p95_above"] >= budget else "warn",
            f"p95 of the {last['predictions']} predictions in the last {last['seconds']:.0f} s "
            f"{_milliseconds(last['p95_above'], last['p95'])}, budget {budget * 1000:g} ms",
            None,
            "No console action makes the service faster: ask the platform team for more "
            "replicas, and call the model owners if the model itself is slow.",
        )
    ]


def active(
    served, drift_report: dict | None, history: list[dict], samples, latency_budget: float
) -> list[Alert]:
    """What is wrong now, worst first: the served model (`service.models.ServedModel`), the
    latest drift report (`dashboard.latest_drift`), the registry log since the serving model
    was promoted (`registry.history`), and the last traffic sample (`trends.TrafficSamples`)
    against the latency budget in seconds."""
    alerts = [
        *_service(served),
        *_drift(drift_report),
        *_gate(history),
        *_latency(samples, latency_budget),
    ]
    return sorted(alerts, key=lambda alert: alert.severity != "bad")
