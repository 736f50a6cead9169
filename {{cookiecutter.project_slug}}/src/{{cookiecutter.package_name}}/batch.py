"""Batch scoring: a CSV or Parquet file in, the serving model's predictions out.

`{{ cookiecutter.package_name }} predict --input FILE --output FILE` reads the file in chunks,
validates each chunk as the API validates a request (the problem type's own request rules),
scores the valid units and appends them to the output, so memory stays bounded whatever the
file's size. Every refused unit goes to a side file with its input row number and the reason;
the run goes on. The output holds one row per scored unit, in input order, with the input row
number (`row`, counted from 0 over the data rows) to join back on.

The problem type scores a chunk through `batch_scorer`: row types score each row on its own
(`RowScorer`); a type whose unit spans several rows (a series) names the columns that keep
them together (`batch_groups`), and a chunk never splits such a unit.

Two engines run the same scorer: "local", pandas and pyarrow in this process, and "ray", Ray
Data over a cluster (RAY_ADDRESS) or local worker processes.
"""

from __future__ import annotations

import logging
import os
import pickle
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from itertools import islice
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
from pydantic import TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from . import bundle
from .errors import DataError, ProjectError, RowsRefused
from .problem_type import PROBLEM_TYPE

log = logging.getLogger(__name__)

ROW = "row"  # the input row number in the output and the side file, from 0
ERROR_COLUMNS = [ROW, "field", "message"]
FORMATS = (".csv", ".parquet")
ENGINES = ("local", "ray")
Scorer = Callable[[pd.DataFrame], tuple[pd.DataFrame, pd.DataFrame]]


def refusals(rows: Iterable[int], fields: Iterable[str], messages: Iterable[str]) -> pd.DataFrame:
    """The side file's rows: which input row, which field, and why."""
    return pd.DataFrame(
        {ROW: list(rows), "field": list(fields), "message": list(messages)}, columns=ERROR_COLUMNS
    )


def numbers(column: pd.Series) -> pd.Series:
    """A column of numbers as read from text: each value a float where it reads as one (the
    exact number written, as training reads a CSV), else left as written so that validation
    refuses it; missing values stay missing."""
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        return column
    if pd.api.types.is_string_dtype(column):
        with suppress(ValueError):  # the usual case at once: every value reads as a number
            return column.astype(float)

    def read(value: object) -> object:
        try:
            return float(value) if isinstance(value, str) else value
        except ValueError:
            return value

    return column.astype(object).map(read, na_action="ignore")


def plain_records(frame: pd.DataFrame) -> list[dict]:
    """The rows as dicts of plain values, None where a value is missing."""
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def plain_values(column: pd.Series) -> list:
    """A column's values as plain Python values, None where a value is missing."""
    values = column.to_numpy(dtype=object, copy=True)
    values[column.isna().to_numpy()] = None
    return values.tolist()


def field_type(field: FieldInfo) -> object:
    """The type a pydantic model validates one field's value as, constraints included."""
    return Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation


class RowScorer:
    """Scores rows on their own, each validated as a request row of the API (the row model
    of the bundle's feature schema), the valid ones predicted a chunk at a time.

    A row model checks each field by its type alone, so a chunk is validated column by
    column, each by its field's type in the row model, without a dict per row. The rows
    refused there, or with a value in a column the model does not read, are validated again
    as rows for the API's reason. The valid rows are predicted in one call of the trained
    pipeline: the API's reference path, which its compiled fast path (built for small
    requests) is checked against."""

    def __init__(self, model_bundle) -> None:
        from .predictor import row_model

        self.pipeline = model_bundle.model
        self.schema = model_bundle.metadata["features"]
        self.names = [feature["name"] for feature in self.schema]
        row = row_model(self.schema)
        self.rows = TypeAdapter(list[row])
        self.columns = {
            field.alias: TypeAdapter(list[field_type(field)]) for field in row.model_fields.values()
        }

    def values(self, chunk: pd.DataFrame) -> pd.DataFrame:
        """The chunk's values as the API receives them: numbers as numbers, dates as text;
        the columns the model does not read stay as they are."""
        frame = chunk.drop(columns=ROW)
        for feature in self.schema:
            name = feature["name"]
            if feature["kind"] == "numeric":
                frame[name] = numbers(frame[name])
            elif feature["kind"] == "datetime" and pd.api.types.is_datetime64_any_dtype(
                frame[name]
            ):
                frame[name] = frame[name].map(lambda t: t.isoformat(), na_action="ignore")
        return frame

    def validate(self, frame: pd.DataFrame) -> tuple[dict[str, list], set[int]]:
        """Each feature's validated values, and the positions of the rows some field
        refuses (the values are complete only when there are none)."""
        valid, refused = {}, set()
        for name, column in self.columns.items():
            try:
                valid[name] = column.validate_python(plain_values(frame[name]))
            except ValidationError as exc:
                errors = exc.errors(include_input=False, include_url=False)
                refused.update(error["loc"][0] for error in errors)
        return valid, refused

    def reasons(self, frame: pd.DataFrame) -> dict[int, tuple[str, str]]:
        """The field and the API's message for each refused row of `frame`, by position:
        the rows are validated as the API validates a request's rows."""
        records = plain_records(frame)
        for record in records:  # a column the model does not read counts where it has a value
            for column in [c for c in record if c not in self.names and record[c] is None]:
                del record[column]
        found: dict[int, tuple[str, str]] = {}
        try:
            self.rows.validate_python(records)
        except ValidationError as exc:
            for error in exc.errors(include_input=False, include_url=False):
                index, *field = error["loc"]
                found.setdefault(index, (".".join(map(str, field)), error["msg"]))
        return found

    def __call__(self, chunk: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        numbered = chunk[ROW].to_numpy()
        frame = self.values(chunk)
        valid, suspect = self.validate(frame)
        extra = [column for column in frame.columns if column not in self.names]
        suspect.update(np.flatnonzero(frame[extra].notna().any(axis=1)).tolist())
        flagged = np.array(sorted(suspect), dtype=int)
        found = self.reasons(frame.iloc[flagged]) if len(flagged) else {}
        bad = flagged[sorted(found)]
        kept = np.setdiff1d(np.arange(len(frame)), bad)
        if len(suspect) and len(kept):
            valid, _ = self.validate(frame.iloc[kept])
        outputs = pd.DataFrame({ROW: numbered[kept]})
        if len(kept):
            from .predictor import to_frame

            rows = to_frame(valid, self.schema)
            predictions = PROBLEM_TYPE.predict(self.pipeline, rows)
            for name, values in PROBLEM_TYPE.batch_outputs(predictions).items():
                outputs[name] = values
        reasons = [found[i] for i in sorted(found)]
        return outputs, refusals(
            numbered[bad], (field for field, _ in reasons), (message for _, message in reasons)
        )


def read_columns(path: Path) -> list[str]:
    """The columns of a CSV or Parquet file; DataError if it is missing or of another kind."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.suffix.lower() not in FORMATS:
        raise DataError(f"{path}: read CSV (.csv) or Parquet (.parquet), not {path.suffix!r}")
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).schema_arrow.names
    try:
        return list(pd.read_csv(path, nrows=0).columns)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV file: {exc}") from None


def count_rows(path: Path) -> int | None:
    """The rows of a Parquet file, from its footer; None for CSV (not known before reading)."""
    if path.suffix.lower() != ".parquet":
        return None
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


def read_chunks(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The file in chunks of `chunk_rows` rows, each with its rows' input numbers (`ROW`).
    A CSV is read as text, every value as written, for the scorer to read as training did."""
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        chunks = (b.to_pandas() for b in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows))
    else:
        chunks = pd.read_csv(path, chunksize=chunk_rows, dtype=str)
    start = 0
    for chunk in chunks:
        chunk = chunk.reset_index(drop=True)
        chunk.insert(0, ROW, np.arange(start, start + len(chunk)))
        start += len(chunk)
        yield chunk


def whole_units(chunks: Iterable[pd.DataFrame], keys: list[str]) -> Iterator[pd.DataFrame]:
    """Chunks that never split a unit whose rows share the values of `keys` (no keys: the
    whole file is one unit). The rows of a unit must be together in the file: the last unit
    of a chunk is held back and joins the next chunk."""
    held = None
    for chunk in chunks:
        if held is not None:
            chunk = pd.concat([held, chunk], ignore_index=True)
        ids = (
            chunk[keys].astype(str).agg("\x1f".join, axis=1) if keys else pd.Series("", chunk.index)
        )
        last = ids.to_numpy() == ids.iloc[-1]
        tail = len(last) - np.argmin(last[::-1]) if not last.all() else 0
        held, ready = chunk.iloc[tail:], chunk.iloc[:tail]
        if len(ready):
            yield ready
    if held is not None and len(held):
        yield held


class Sink:
    """An output file written chunk by chunk, CSV or Parquet by its extension, under a
    temporary name that replaces the target only when the run completes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.partial = path.with_name(f".{path.name}.partial")
        self.parquet = path.suffix.lower() == ".parquet"
        self.writer = None
        self.rows = 0
        self.empty: pd.DataFrame | None = None

    def write(self, frame: pd.DataFrame) -> None:
        if frame.empty:
            self.empty = frame if self.empty is None else self.empty
            return
        if self.parquet:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(frame, preserve_index=False)
            if self.writer is None:
                self.writer = pq.ParquetWriter(self.partial, table.schema)
            self.writer.write_table(table.cast(self.writer.schema))
        else:
            frame.to_csv(
                self.partial, mode="a" if self.rows else "w", header=not self.rows, index=False
            )
        self.rows += len(frame)

    def finish(self) -> None:
        """Close the file and move it into place; an empty run writes only the header."""
        if self.writer is not None:
            self.writer.close()
        elif not self.rows:
            empty = self.empty if self.empty is not None else pd.DataFrame(columns=[ROW])
            if self.parquet:
                empty.to_parquet(self.partial, index=False)
            else:
                empty.to_csv(self.partial, index=False)
        os.replace(self.partial, self.path)

    def discard(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.partial.unlink(missing_ok=True)


def load_bundle(models_dir: Path, version: str | None):
    """The served model of `models/current`, or of bundle `version`: loaded and verified as
    the service loads it."""
    path = bundle.locate(models_dir, version) if version else bundle.resolve(models_dir, "current")
    return bundle.load(path)


def _check_paths(source: Path, output: Path, errors: Path, force: bool) -> None:
    if output.suffix.lower() not in FORMATS:
        raise DataError(f"{output}: write CSV (.csv) or Parquet (.parquet), not {output.suffix!r}")
    if output.resolve() == source.resolve() or errors.resolve() in (
        source.resolve(),
        output.resolve(),
    ):
        raise DataError(f"{output}: the output and the side file must differ from the input")
    existing = [str(p) for p in (output, errors) if p.exists()]
    if existing and not force:
        raise DataError(f"{', '.join(existing)}: already there; pass --force to replace")


def errors_path(output: Path) -> Path:
    """The default side file of refused rows: next to the output, `<stem>.errors.csv`."""
    return output.with_name(f"{output.stem}.errors.csv")


def run(
    models_dir: Path,
    source: Path,
    output: Path,
    *,
    errors: Path | None = None,
    chunk_rows: int = 50_000,
    version: str | None = None,
    engine: str = "local",
    force: bool = False,
    cpus: int | None = None,
) -> dict:
    """Score `source` into `output`; refused units go to `errors`. Returns the counts;
    raises RowsRefused (exit 1) when some unit was refused, DataError (exit 2) on bad input."""
    errors = errors or errors_path(output)
    columns = read_columns(source)
    _check_paths(source, output, errors, force)
    loaded = load_bundle(models_dir, version)
    schema = loaded.metadata["features"]
    absent = [c for c in PROBLEM_TYPE.batch_columns(schema) if c not in columns]
    if absent:
        raise DataError(f"{source}: columns missing: {', '.join(absent)}")
    chunks = read_chunks(source, chunk_rows)
    keys = PROBLEM_TYPE.batch_groups(schema)
    if keys is not None:
        chunks = whole_units(chunks, keys)
    if engine == "ray":
        results = ray_results(loaded, chunks, cpus)
    else:
        scorer = PROBLEM_TYPE.batch_scorer(loaded)
        results = ((*scorer(chunk), chunk) for chunk in chunks)
    counts = _write(results, Sink(output), Sink(errors), count_rows(source))
    counts |= {"version": loaded.version, "output": str(output), "errors": str(errors)}
    if counts["refused"]:
        raise RowsRefused(
            f"{counts['refused']} of {counts['read']} input rows refused, reasons in {errors}; "
            f"{counts['scored']} predictions in {output}"
        )
    return counts


def _write(results, out: Sink, refused: Sink, total: int | None) -> dict:
    """Write each chunk's outputs and refusals as they come, with a progress bar on stderr."""
    from rich.console import Console
    from rich.progress import Progress

    read = 0
    try:
        with Progress(console=Console(file=sys.stderr), transient=True) as progress:
            task = progress.add_task("scoring rows", total=total)
            for outputs, errors, chunk in results:
                out.write(outputs)
                refused.write(errors)
                read += len(chunk)
                progress.update(task, completed=read)
    except BaseException:
        out.discard()
        refused.discard()
        raise
    out.finish()
    if refused.rows:
        refused.finish()
    else:
        refused.discard()
        refused.path.unlink(missing_ok=True)  # an old side file would report rows not refused
    return {"read": read, "scored": out.rows, "refused": refused.rows}


# --- the Ray engine ----------------------------------------------------------------------

_WORKER_SCORERS: dict[str, Scorer] = {}


def _score_on_worker(chunk: pd.DataFrame, model_ref) -> pd.DataFrame:
    """One chunk scored in a Ray worker by the same scorer as the local engine. The model
    comes from the object store once per worker; the results travel back pickled, so their
    columns keep their types."""
    import ray

    key = model_ref.hex()
    if key not in _WORKER_SCORERS:
        _WORKER_SCORERS[key] = PROBLEM_TYPE.batch_scorer(ray.get(model_ref))
    return pd.DataFrame({"result": [pickle.dumps(_WORKER_SCORERS[key](chunk))]})


def ray_results(loaded, chunks: Iterable[pd.DataFrame], cpus: int | None) -> Iterator[tuple]:
    """Each chunk's outputs and refusals, scored by Ray Data in input order. Chunks go to the
    workers a few at a time, so memory stays bounded. A cluster named by RAY_ADDRESS is
    joined; otherwise Ray starts local worker processes (`cpus`, default all)."""
    try:
        import ray
    except ImportError:
        raise ProjectError("the ray engine needs Ray: install the ray extra") from None
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    address = os.environ.get("RAY_ADDRESS")
    ray.init(
        address=address,
        num_cpus=None if address else cpus,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    try:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        model_ref = ray.put(loaded)
        window = 2 * int(ray.available_resources().get("CPU", 1))
        chunks = iter(chunks)
        while group := list(islice(chunks, window)):
            scored = ray.data.from_pandas(group).map_batches(
                _score_on_worker, batch_size=None, batch_format="pandas", fn_args=(model_ref,)
            )
            results = [pickle.loads(r["result"]) for r in scored.iter_rows()]
            yield from ((*result, chunk) for result, chunk in zip(results, group, strict=True))
    finally:
        ray.shutdown()
