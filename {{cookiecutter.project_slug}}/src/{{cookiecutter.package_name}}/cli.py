"""One command line for every stage of the workflow, from `collect` to `monitor` and `retrain`.

`{{ cookiecutter.package_name }} --help` lists the commands; the Makefile calls them. Each command
imports what it needs when it runs, so `--help` and the registry commands start at once.
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from .errors import ProjectError, exit_code

app = typer.Typer(
    help="The ML workflow, stage by stage: from collect to evaluate, then monitor and retrain.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
log = logging.getLogger(__name__)

ROOT = typer.Option(Path("."), "--root", help="Project root holding configs/, data/, models/.")


def _context(root: Path):
    from .config import Paths, load_params, load_problem

    paths = Paths(root.resolve())
    return paths, load_problem(paths.problem), load_params(paths.params)


@app.command()
def collect(
    root: Path = ROOT,
    force: bool = typer.Option(
        False, "--force", help="Archive different existing raw data and replace it."
    ),
) -> None:
    """Stage 2: snapshot the source from problem.yaml into data/raw with a manifest."""
    from . import data

    paths, problem, _ = _context(root)
    data.collect(problem, paths.raw, paths.root, force=force)


@app.command()
def validate(root: Path = ROOT) -> None:
    """Stage 2: check data/raw against the contract in problem.yaml."""
    from . import data
    from .problem_type import PROBLEM_TYPE

    paths, problem, params = _context(root)
    raw = data.read_raw(paths.raw)
    data.validate(raw, problem, params, PROBLEM_TYPE.resolve_features(raw, problem))


@app.command()
def prepare(root: Path = ROOT) -> None:
    """Stage 3: validate, clean and split data/raw into data/processed."""
    from . import data
    from .problem_type import PROBLEM_TYPE

    paths, problem, params = _context(root)
    PROBLEM_TYPE.prepare(data.read_raw(paths.raw), problem, params, paths.processed)


@app.command("eda")
def eda_command(root: Path = ROOT) -> None:
    """Stage 3: write reports/eda/README.md with tables and figures of the training set."""
    from . import data, tables
    from .problem_type import PROBLEM_TYPE

    paths, problem, _ = _context(root)
    train_df, _, schema = data.read_processed(paths.processed)
    notes = tables.preparation(paths.processed)
    PROBLEM_TYPE.eda_report(train_df, schema, problem.target.name, paths.reports / "eda", **notes)


@app.command("train")
def train_command(root: Path = ROOT) -> None:
    """Stage 4: cross-validate and fit baseline and candidate; write a model bundle."""
    from . import tracking, train

    paths, problem, params = _context(root)
    with tracking.start(paths.root, "train") as run:
        train.run(paths.processed, paths.models, problem, params, tracked=run)


@app.command("evaluate")
def evaluate_command(root: Path = ROOT) -> None:
    """Stage 5: compare candidate and baseline on the test set; promote only through the gate."""
    from . import evaluate, tracking

    paths, problem, params = _context(root)
    with tracking.for_bundle(paths.root, "evaluate") as run:
        evaluate.run(paths.processed, paths.models, paths.reports, problem, params, tracked=run)


@app.command()
def tune(
    root: Path = ROOT,
    trials: int = typer.Option(20, "--trials", min=1, help="Trials to add to the study."),
) -> None:
    """Stage 4: search the candidate's params over params.yaml `tune.space` with Optuna,
    scored on the training set alone, and write the best to `model.params`. The study in
    optuna.db resumes. Exits 2 on a bad space, 3 when the training set is too small."""
    from . import tracking
    from . import tune as tuning

    paths, problem, params = _context(root)
    with tracking.start(paths.root, "tune") as run:
        tuning.run(paths, problem, params, trials, tracked=run)


@app.command()
def pipeline(root: Path = ROOT) -> None:
    """Stages 2 to 5 in one go: collect, prepare (with validation), eda, train, evaluate."""
    from . import data, evaluate, tables, tracking, train
    from .problem_type import PROBLEM_TYPE

    paths, problem, params = _context(root)
    with tracking.start(paths.root, "pipeline") as run:  # one MLflow run for the new bundle
        data.collect(problem, paths.raw, paths.root)
        PROBLEM_TYPE.prepare(data.read_raw(paths.raw), problem, params, paths.processed)
        train_df, _, schema = data.read_processed(paths.processed)
        notes = tables.preparation(paths.processed)
        PROBLEM_TYPE.eda_report(
            train_df, schema, problem.target.name, paths.reports / "eda", **notes
        )
        train.run(paths.processed, paths.models, problem, params, tracked=run)
        evaluate.run(paths.processed, paths.models, paths.reports, problem, params, tracked=run)


LOG = typer.Option(
    None,
    "--log",
    help="The service's prediction log, relative to --root.",
    show_default="logs/predictions.jsonl",
)
DATA = typer.Option(
    None,
    "--data",
    help="A CSV or Parquet file of recent rows instead of the log, relative to --root. "
    "If it has the target column, performance is checked too.",
)


@app.command("monitor")
def monitor_command(
    root: Path = ROOT,
    log_path: Path | None = LOG,
    data_path: Path | None = DATA,
    last: int | None = typer.Option(None, "--last", min=1, help="Only the last N records."),
    since: str | None = typer.Option(
        None, "--since", help="Only log records from this ISO time on (UTC without an offset)."
    ),
) -> None:
    """Stage 7: compare recent inputs and predictions with the training data.

    Exits 0 for no drift, 1 for drift, 2 on an error, 3 when there is not enough data."""
    from . import drift_report, monitor

    paths, _, params = _context(root)
    try:
        start = datetime.fromisoformat(since) if since else None
    except ValueError as exc:
        raise typer.BadParameter(f"not an ISO time: {since!r}", param_hint="--since") from exc
    report = monitor.run(
        paths.models,
        paths.reports / "monitoring",
        params.monitoring,
        log_path=paths.root / (log_path or monitor.DEFAULT_LOG),
        data_path=paths.root / data_path if data_path else None,
        last=last,
        since=start,
    )
    drift_report.raise_verdict(report)  # exit 1 on drift, 3 on not enough data


@app.command()
def predict(
    input_path: Annotated[
        Path,
        typer.Option("--input", help="The rows to score: a CSV or Parquet file."),
    ],
    output: Annotated[
        Path,
        typer.Option("--output", help="Where the predictions go: .csv or .parquet."),
    ],
    errors: Annotated[
        Path | None,
        typer.Option(
            "--errors",
            help="The side file of refused rows with the reason (CSV).",
            show_default="<output stem>.errors.csv",
        ),
    ] = None,
    chunk_rows: int = typer.Option(50_000, "--chunk-rows", min=1, help="Rows read at a time."),
    model: str | None = typer.Option(
        None, "--model", help="Score with this bundle version instead of models/current."
    ),
    engine: str = typer.Option(
        "local",
        "--engine",
        help="local: pandas and pyarrow in this process. ray: Ray Data, on the cluster "
        "RAY_ADDRESS names or on local worker processes (the ray extra).",
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing output or side file."),
    root: Path = ROOT,
) -> None:
    """Stage 6: score a whole file with the serving model, in chunks of bounded memory.
    Rows are validated as the API validates them; refused rows go to the side file. File
    paths are relative to the working directory; --root only locates models/.

    Exits 0 when every row was scored, 1 when some were refused, 2 on bad input."""
    from . import batch
    from .config import Paths

    if engine not in batch.ENGINES:
        raise typer.BadParameter(f"choose one of {', '.join(batch.ENGINES)}", param_hint="--engine")
    counts = batch.run(
        Paths(root.resolve()).models,
        input_path,
        output,
        errors=errors,
        chunk_rows=chunk_rows,
        version=model,
        engine=engine,
        force=force,
    )
    typer.echo(f"{counts['scored']} predictions of {counts['version']} in {output}")


@app.command()
def retrain(
    root: Path = ROOT,
    holdout: Annotated[
        Path | None,
        typer.Option(help="Recent labelled rows (CSV/Parquet) the candidate must also do well on."),
    ] = None,
    collect: bool = typer.Option(
        True,
        help="Collect the source again first (the old snapshot is archived); --no-collect "
        "trains on the current snapshot, uploads from the console included.",
    ),
    promote: bool = typer.Option(
        True,
        help="Promote a candidate that passes the gate; --no-promote leaves it to an operator.",
    ),
) -> None:
    """Stage 7: collect the source again, train a candidate and promote it only through the
    gate, which also compares it with the serving model on the same fixed test set. One
    retrain runs at a time."""
    from . import data, evaluate, monitor, registry, tracking, train
    from .problem_type import PROBLEM_TYPE

    paths, problem, params = _context(root)
    recent = monitor.read_data(holdout) if holdout else None
    with registry.retrain_lock(paths.models), tracking.start(paths.root, "retrain") as run:
        if collect:
            log.info("step 1/4: collect")
            data.collect(problem, paths.raw, paths.root, force=True)  # the old one is archived
        log.info("step 2/4: prepare")
        PROBLEM_TYPE.prepare(data.read_raw(paths.raw), problem, params, paths.processed)
        log.info("step 3/4: train")
        train.run(paths.processed, paths.models, problem, params, tracked=run)
        log.info("step 4/4: evaluate")
        evaluate.run(
            paths.processed,
            paths.models,
            paths.reports,
            problem,
            params,
            holdout=recent,
            promote=promote,
            tracked=run,
        )


AUDIT_LOG = typer.Option(
    Path("logs/audit.jsonl"), "--log", help="The console's audit log, relative to --root."
)


@app.command()
def audit(
    root: Path = ROOT,
    last: int = typer.Option(20, "--last", min=1, help="How many of the latest entries."),
    path: Path = AUDIT_LOG,
) -> None:
    """Stage 7: the console's audit log: who did what, by which role, when, and the outcome."""
    from . import console

    for entry in console.read_audit(root / path)[-last:]:
        typer.echo(console.audit_line(entry))


models = typer.Typer(help="Stage 7: the model registry in models/.", no_args_is_help=True)
app.add_typer(models, name="models")


@models.command("list")
def models_list(root: Path = ROOT) -> None:
    """Every bundle, newest first, with its test score, gate verdict and pointers."""
    from . import registry
    from .config import Paths

    rows = registry.versions(Paths(root.resolve()).models)
    for row in rows:
        marks = " ".join(name for name in ("current", "candidate") if row[name])
        score = "" if row["test_score"] is None else f"{row['metric']}={row['test_score']:.4f}"
        gate = row["verdict"] or "not evaluated"
        typer.echo(f"{row['version']}  {row['model']:<24} {score:<18} gate {gate:<13} {marks}")
    if not rows:
        typer.echo("no bundles yet: run `train`")


@models.command("promote")
def models_promote(
    version: str,
    root: Path = ROOT,
    reason: str = typer.Option("manual promotion", help="Why; written to the registry log."),
    force: bool = typer.Option(False, "--force", help="Promote even without a passed gate."),
) -> None:
    """Serve VERSION: point models/current at it (the running service follows)."""
    from . import registry
    from .config import Paths

    registry.promote(Paths(root.resolve()).models, version, reason, force=force)
    typer.echo(f"models/current -> {version}")


@models.command("rollback")
def models_rollback(
    root: Path = ROOT,
    reason: str = typer.Option("manual rollback", help="Why; written to the registry log."),
    to: str | None = typer.Option(
        None, "--to", help="An earlier version that passed the gate, instead of the previous one."
    ),
) -> None:
    """Serve the version that was current before this one, or an earlier one (--to)."""
    from . import registry
    from .config import Paths

    served = registry.rollback(Paths(root.resolve()).models, reason, to=to)
    typer.echo(f"models/current -> {served}")


@models.command("sign")
def models_sign(
    versions: Annotated[list[str] | None, typer.Argument(help="Versions to sign.")] = None,
    every: bool = typer.Option(False, "--all", help="Sign every bundle in models/."),
    trust: bool = typer.Option(
        False,
        "--trust",
        help="Sign even without a valid signature, for bundles made before signing: check "
        "them first (the registry log records it).",
    ),
    root: Path = ROOT,
) -> None:
    """Sign bundles with the current MODEL_SIGNING_KEY: after a key rotation, or bundles
    made before signing. Their files must match their hashes; unless --trust, their
    signature must verify under MODEL_SIGNING_KEY or MODEL_SIGNING_KEY_PREVIOUS."""
    from . import registry
    from .config import Paths

    models_dir = Paths(root.resolve()).models
    if every == bool(versions):
        raise ProjectError("name the versions to sign, or pass --all")
    names = registry.bundle_names(models_dir) if every else versions
    if not names:
        raise ProjectError(f"no bundles in {models_dir}: run `train`")
    registry.sign(models_dir, names, trust=trust)
    for name in names:
        typer.echo(f"signed {name}")


def main() -> None:
    """Entry point: readable logs, and one line instead of a traceback for known errors.
    Any other exception is a bug: its traceback is logged and the exit code is 2, so an
    error is never taken for a verdict (1: no, 3: cannot tell)."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s | %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        app()
    except ProjectError as exc:
        code = exit_code(exc)
        prefix = {1: "no", 3: "cannot tell"}.get(code, "error")
        print(f"{prefix}: {exc}", file=sys.stderr)
        sys.exit(code)
    except Exception:
        log.exception("unexpected error")
        sys.exit(2)
