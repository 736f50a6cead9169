"""Stage 2: collect raw data into an immutable snapshot with a manifest, and validate it."""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from .bundle import sha256_file, write_json
from .config import FeatureKind, FileSource, Params, ProblemConfig, SampleSource, SqlSource
from .errors import DataError
from .problem_type import PROBLEM_TYPE

log = logging.getLogger(__name__)

RAW_FILE = "dataset.parquet"
MANIFEST_FILE = "manifest.json"
TRAIN_FILE, TEST_FILE, FEATURES_FILE, SPLIT_FILE = (
    "train.parquet",
    "test.parquet",
    "features.json",
    "split.json",
)
ROW_ID = "row_id"  # the index name of processed rows: the identity of their raw row
_MISSING = "\x00missing"  # how a missing value enters a row's hash, whatever its dtype


def read_csv(path: Path) -> pd.DataFrame:
    """A CSV file with every number read exactly as written, so that training, the monitor
    and a file a user copies rows from agree to the last digit (a repeated value read one
    unit off in the last place lands on the other side of its reference copy and looks
    like drift). pandas 3 reads floats exactly by default; pandas 2 needs round_trip."""
    if int(pd.__version__.split(".")[0]) < 3:
        return pd.read_csv(path, float_precision="round_trip")
    return pd.read_csv(path)


def load_source(source: SampleSource | FileSource | SqlSource, root: Path) -> pd.DataFrame:
    """Read the data named by problem.yaml `source`."""
    if isinstance(source, SampleSource):
        return PROBLEM_TYPE.samples[source.name]()
    if isinstance(source, FileSource):
        path = source.path if source.path.is_absolute() else root / source.path
        if not path.exists():
            raise DataError(f"problem.yaml source.path: {path} does not exist")
        if path.suffix.lower() == ".parquet":
            return pd.read_parquet(path)
        return read_csv(path)

    import sqlalchemy

    url = sqlalchemy.engine.make_url(source.connection_url())
    if (
        url.drivername.startswith("sqlite")
        and url.database
        and not Path(url.database).is_absolute()
    ):
        url = url.set(database=str(root / url.database))  # relative to the project, not the shell
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as connection:
            return pd.read_sql_query(sqlalchemy.text(source.query), connection)
    except (sqlalchemy.exc.SQLAlchemyError, pd.errors.DatabaseError) as exc:
        raise DataError(
            f"problem.yaml source: the SQL query failed: {exc.__class__.__name__}: {exc}"
        ) from exc
    finally:
        engine.dispose()


def _canonical(column: pd.Series) -> pd.Series:
    """Values in a form that does not depend on the dtype a reader inferred: numbers as
    floats (3 and 3.0 are one value), everything else as text."""
    if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        return pd.to_numeric(column).astype("float64")
    return column.astype(str).where(column.notna(), _MISSING)


def row_ids(raw: pd.DataFrame) -> pd.Series:
    """A stable identity for every raw row: `<content>.<n>`.

    `content` is a hash of the row's raw values (all columns, in name order), so it does not
    change when rows are added, removed or reordered, or when features, kinds or
    preprocessing change. `n` numbers identical rows in snapshot order (0 for the first
    copy). All copies share `content`, which `row_content` returns: the split keeps them
    on one side."""
    canonical = pd.DataFrame(
        {str(name): _canonical(raw[name]) for name in sorted(raw.columns, key=str)},
        index=raw.index,
    )
    content = pd.Series(
        [f"{value:016x}" for value in pd.util.hash_pandas_object(canonical, index=False)],
        index=raw.index,
        dtype=object,
    )
    copy = content.groupby(content, sort=False).cumcount()
    return content + "." + copy.astype(str)


def row_content(ids) -> pd.Series:
    """The content part of row identities: equal for identical raw rows."""
    return pd.Series(ids, dtype=object).str.split(".", n=1).str[0]


def collect(problem: ProblemConfig, raw_dir: Path, root: Path, force: bool = False) -> dict:
    """Snapshot the source into raw_dir. Different existing data is kept unless `force`,
    and even then it is archived rather than overwritten."""
    df = load_source(problem.source, root)
    if df.empty:
        raise DataError("problem.yaml source: the source returned no rows")
    return _snapshot(df, raw_dir, {"source": problem.source.model_dump(mode="json")}, force)


def add_rows(rows: pd.DataFrame, raw_dir: Path, origin: dict) -> dict:
    """A new snapshot: the current one with `rows` appended (an operator's upload, already
    validated). The previous snapshot is archived, never overwritten; the manifest says
    where the rows came from (`origin`) and which snapshot they were added to."""
    current = read_raw(raw_dir)
    combined = pd.concat([current, rows[list(current.columns)]], ignore_index=True)
    fields = {
        "source": {"kind": "upload", **origin},
        "added_rows": len(rows),
        "added_to": recorded_sha256(raw_dir / MANIFEST_FILE),
    }
    return _snapshot(combined, raw_dir, fields, force=True)


def _snapshot(df: pd.DataFrame, raw_dir: Path, fields: dict, force: bool) -> dict:
    """Write `df` as the raw snapshot with its manifest (`fields` go into it). A different
    existing snapshot is archived when `force`, else kept with a DataError."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    target, manifest_path = raw_dir / RAW_FILE, raw_dir / MANIFEST_FILE
    staged = raw_dir / f".{RAW_FILE}.tmp"
    df.to_parquet(staged, index=False)
    digest = sha256_file(staged)

    if target.exists():
        existing = sha256_file(target)
        if existing == digest and recorded_sha256(manifest_path) == digest:
            staged.unlink()
            log.info("raw data unchanged (sha256 %s…); nothing to collect", digest[:12])
            return json.loads(manifest_path.read_text(encoding="utf-8"))
        if not force:
            staged.unlink()
            raise DataError(
                f"{target} already holds different data (sha256 {existing[:12]}…); raw data is never "
                "overwritten: rerun collect with --force to archive it and take the new snapshot"
            )
        archive = raw_dir / "archive"
        archive.mkdir(exist_ok=True)
        os.replace(target, archive / f"dataset-{existing[:12]}.parquet")
        if manifest_path.exists():
            os.replace(manifest_path, archive / f"manifest-{existing[:12]}.json")
        log.warning("archived the previous raw data to %s", archive)

    os.replace(staged, target)
    copies = len(df) - row_content(row_ids(df)).nunique()
    manifest = {
        "file": RAW_FILE,
        **fields,
        "rows": len(df),
        "repeated_rows": copies,  # rows identical to an earlier one, kept as they came
        "columns": [str(c) for c in df.columns],
        "sha256": digest,
        "collected_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(manifest_path, manifest)
    log.info(
        "collected %d rows x %d columns into %s (%d repeat an earlier row)",
        len(df),
        df.shape[1],
        target,
        copies,
    )
    return manifest


def recorded_sha256(manifest_path: Path) -> str | None:
    """The sha256 of the snapshot as `collect` wrote it in the manifest, None without one."""
    try:
        return json.loads(manifest_path.read_text(encoding="utf-8"))["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_raw(raw_dir: Path) -> pd.DataFrame:
    """The snapshot `collect` took, after checking that it has not changed since: its
    sha256 must be the one in the manifest."""
    path, manifest_path = raw_dir / RAW_FILE, raw_dir / MANIFEST_FILE
    if not path.exists():
        raise DataError(f"{path} does not exist: run `collect` first")
    recorded, actual = recorded_sha256(manifest_path), sha256_file(path)
    if recorded is None:
        raise DataError(
            f"{manifest_path} is missing or unreadable, so {path.name} cannot be checked: run "
            "`collect --force` to take a new snapshot with its manifest (the old one is archived)"
        )
    if actual != recorded:
        raise DataError(
            f"{path} changed after `collect`: its sha256 {actual[:12]}… is not the manifest's "
            f"{recorded[:12]}…; run `collect --force` to take a new snapshot (the changed file "
            "is archived)"
        )
    return pd.read_parquet(path)


def write_processed(
    processed_dir: Path,
    train: pd.DataFrame,
    test: pd.DataFrame,
    features: dict[str, FeatureKind],
    target: str | None,
    dropped: dict[str, str],
) -> None:
    """The training and test sets and their input schema, as stage 4 reads them back with
    `read_processed`. The index is kept: a row type's holds the row identities."""
    processed_dir.mkdir(parents=True, exist_ok=True)
    train.to_parquet(processed_dir / TRAIN_FILE)
    test.to_parquet(processed_dir / TEST_FILE)
    # a list of pairs keeps the column order that the model was trained with
    write_json(
        processed_dir / FEATURES_FILE,
        {"target": target, "features": list(features.items()), "dropped": dropped},
    )


def read_processed(
    processed_dir: Path,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, FeatureKind]]:
    """The training set, the fixed test set and the input schema written by stage 3, after
    checking that no test unit is in the training set."""
    paths = [processed_dir / name for name in (TRAIN_FILE, TEST_FILE, FEATURES_FILE)]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise DataError(f"{', '.join(missing)} missing: run `prepare` first")
    train, test = pd.read_parquet(paths[0]), pd.read_parquet(paths[1])
    features = dict(json.loads(paths[2].read_text())["features"])
    PROBLEM_TYPE.check_disjoint(train, test, features, processed_dir)
    return train.reset_index(drop=True), test.reset_index(drop=True), features


def validation_schema(problem: ProblemConfig, params: Params, features: dict[str, FeatureKind]):
    """The contract of problem.yaml as a pandera schema."""
    import pandera.pandas as pa

    max_share = params.validation.max_missing_share

    def missing_share() -> pa.Check:
        return pa.Check(
            lambda s: s.isna().mean() <= max_share,
            ignore_na=False,
            name="missing_share",
        )

    dates = pa.Check(
        lambda s: pd.to_datetime(s.astype(str), errors="coerce", format="ISO8601").notna(),
        name="is_date",
        error="not an ISO date",
    )
    not_blank = pa.Check(
        lambda s: s.astype(str).str.strip() != "", name="not_blank", error="blank text"
    )
    extra = {"datetime": [dates], "text": [not_blank]}
    columns = {
        name: pa.Column(
            float if kind == "numeric" else None,
            coerce=kind == "numeric",
            nullable=True,
            checks=[missing_share(), *extra.get(kind, [])],
        )
        for name, kind in features.items()
    }
    for name in PROBLEM_TYPE.target_columns(problem.target):
        columns[name] = PROBLEM_TYPE.target_column(problem.target)
    return pa.DataFrameSchema(columns, strict=False)


def problems(df: pd.DataFrame, problem: ProblemConfig, params: Params, features) -> list[str]:
    """One line per bad column of `df`: which rule how many rows break, with examples; empty
    when `df` meets the contract.

    `features` are the model's inputs and their kinds, `PROBLEM_TYPE.resolve_features(df,
    problem)`: what is valid depends on the kind (a number, an ISO date, text that is not
    blank), and where problem.yaml declares no kinds they are inferred from the data. The
    caller resolves them once and passes them on, so that the inputs validated are the
    inputs modelled."""
    import pandera.pandas as pa

    schema = validation_schema(problem, params, features)
    stamps = PROBLEM_TYPE.timestamps(df, problem.target)
    if stamps is not None:  # the time of each row as read from its timestamp column(s)
        df = df.assign(**{stamps.name: stamps})
    try:
        schema.validate(df, lazy=True)
    except pa.errors.SchemaErrors as exc:
        return _summarise(exc.failure_cases, df, params.validation.max_missing_share)
    return []


def validate(df: pd.DataFrame, problem: ProblemConfig, params: Params, features) -> None:
    """Raise DataError naming each bad column and how many rows break which rule (see
    `problems`)."""
    lines = problems(df, problem, params, features)
    if lines:
        raise DataError("data validation failed:\n  " + "\n  ".join(lines))
    log.info(
        "validated %d rows: %d features and target %r", len(df), len(features), problem.target.name
    )


def _summarise(failures: pd.DataFrame, df: pd.DataFrame, max_share: float) -> list[str]:
    lines = []
    for (column, check), group in failures.groupby(["column", "check"], sort=True, dropna=False):
        if check == "missing_share":
            rows = int(df[column].isna().sum())
            detail = f"{rows} of {len(df)} rows missing, more than max_missing_share {max_share:g}"
        elif group["index"].notna().any():
            rows = int(group["index"].dropna().nunique())
            examples = ", ".join(map(repr, group["failure_case"].drop_duplicates().head(3)))
            detail = f"{rows} rows fail, e.g. {examples}"
        else:
            detail = f"fails: {group['failure_case'].iloc[0]}"
        lines.append(f"column {column!r}: {check}: {detail}")
    return lines
