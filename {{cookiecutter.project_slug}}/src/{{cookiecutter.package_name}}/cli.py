"""One command line for every stage: `{{ cookiecutter.package_name }} collect|validate|prepare|eda|train|evaluate|pipeline`."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer

from . import data, eda, evaluate, features, train
from .config import Paths, load_params, load_problem
from .errors import GateFailed, ProjectError

app = typer.Typer(
    help="The ML workflow, stage by stage: collect, validate, prepare, eda, train, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
log = logging.getLogger(__name__)

ROOT = typer.Option(Path("."), "--root", help="Project root holding configs/, data/, models/.")


def _context(root: Path):
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
    paths, problem, _ = _context(root)
    data.collect(problem, paths.raw, paths.root, force=force)


@app.command()
def validate(root: Path = ROOT) -> None:
    """Stage 2: check data/raw against the contract in problem.yaml."""
    paths, problem, params = _context(root)
    raw = data.read_raw(paths.raw)
    data.validate(raw, problem, params, features.resolve_features(raw, problem))


@app.command()
def prepare(root: Path = ROOT) -> None:
    """Stage 3: validate, clean and split data/raw into data/processed."""
    paths, problem, params = _context(root)
    features.prepare(data.read_raw(paths.raw), problem, params, paths.processed)


@app.command("eda")
def eda_command(root: Path = ROOT) -> None:
    """Stage 3: write reports/eda/README.md with tables and figures of the training set."""
    paths, problem, _ = _context(root)
    train_df, _, schema = features.read_processed(paths.processed)
    eda.report(train_df, schema, problem.target.name, paths.reports / "eda")


@app.command("train")
def train_command(root: Path = ROOT) -> None:
    """Stage 4: cross-validate and fit baseline and candidate; write a model bundle."""
    paths, problem, params = _context(root)
    train.run(paths.processed, paths.models, problem, params)


@app.command("evaluate")
def evaluate_command(root: Path = ROOT) -> None:
    """Stage 5: compare candidate and baseline on the test set; promote only through the gate."""
    paths, problem, params = _context(root)
    evaluate.run(paths.processed, paths.models, paths.reports, problem, params)


@app.command()
def pipeline(root: Path = ROOT) -> None:
    """Stages 2 to 5 in one go: collect, prepare (with validation), eda, train, evaluate."""
    paths, problem, params = _context(root)
    data.collect(problem, paths.raw, paths.root)
    features.prepare(data.read_raw(paths.raw), problem, params, paths.processed)
    train_df, _, schema = features.read_processed(paths.processed)
    eda.report(train_df, schema, problem.target.name, paths.reports / "eda")
    train.run(paths.processed, paths.models, problem, params)
    evaluate.run(paths.processed, paths.models, paths.reports, problem, params)


def main() -> None:
    """Entry point: readable logs, and one line instead of a traceback for known errors."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s | %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        app()
    except GateFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except ProjectError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
