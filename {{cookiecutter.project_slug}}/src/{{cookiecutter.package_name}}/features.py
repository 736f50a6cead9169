"""Stage 3: feature inference, cleaning, the train/test split and the preprocessing pipeline."""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    MinMaxScaler,
    OneHotEncoder,
    RobustScaler,
    StandardScaler,
)

from . import task
from .config import FeatureKind, Params, PreprocessingParams, ProblemConfig, SplitParams
from .data import validate, write_json
from .errors import DataError

log = logging.getLogger(__name__)

SCALERS = {"standard": StandardScaler, "robust": RobustScaler, "minmax": MinMaxScaler}
DATE_PARTS = ("year", "month", "day", "day_of_week")


# A category seen in at most this many rows on average cannot be learned from: one-hot
# encoding gives each value its own column, which the model can only memorise.
MAX_ROWS_PER_ID = 2
MIN_ID_VALUES = 20  # fewer distinct values than this are encoded as categories
TEXT_MIN_WORDS = 3  # median words per value from which a column is free text

# The common plain form, read without pandas' per-call overhead (see `parse_date`).
_PLAIN_DATE = re.compile(r"(\d{4})([-/.])(\d{1,2})\2(\d{1,2})")
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?")


def parse_dates(values) -> pd.Series:
    """The one reading of date features, in inference, training, the API and monitoring.

    ISO 8601 as pandas reads it, with the year first: 2012-01-31, also written 2012/01/31,
    2012/1/31 or 2012.01.31, or 20120131, optionally with a time (2012-01-31 13:45). Day-
    or month-first forms (31.01.2012, 01/31/2012) are not dates: their order is ambiguous.
    Anything else becomes NaT, which the model imputes and validation reports.
    """
    return pd.to_datetime(pd.Series(values).astype(str), errors="coerce", format="ISO8601")


def parse_date(text: str) -> datetime | None:
    """One value as `parse_dates` reads it (for the API), or None if it is not a date."""
    if match := _PLAIN_DATE.fullmatch(text):
        year, _, month, day = match.groups()
        try:
            return datetime(int(year), int(month), int(day))
        except ValueError:
            return None
    parsed = parse_dates([text]).iloc[0]
    return None if pd.isna(parsed) else parsed.to_pydatetime()


def category_text(value: object) -> str:
    """A category as training stores it and the API looks it up: text, with numbers in one
    spelling, so that 3, 3.0 and "3.0" (a code column read with gaps as floats, sent as
    JSON or copied from the CSV) are the same category."""
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, str):
        if not _NUMBER.fullmatch(value):
            return value
        value = int(value) if value.lstrip("-").isdigit() else float(value)
    if isinstance(value, float | np.floating) and float(value).is_integer():
        value = int(value)
    if isinstance(value, int | np.integer):
        return str(int(value))
    return str(value)


def _looks_like_dates(column: pd.Series) -> bool:
    values = column.dropna()
    if values.empty:
        return False
    return bool(parse_dates(values.astype(str)).notna().mean() >= 0.95)


def _mostly_numbers(column: pd.Series) -> bool:
    values = column.dropna()
    return not values.empty and pd.to_numeric(values, errors="coerce").notna().mean() >= 0.95


def _looks_like_text(column: pd.Series) -> bool:
    """Free text: several words per value, and most values distinct (unlike categories)."""
    values = column.dropna().astype(str)
    if values.empty:
        return False
    words = values.str.split().str.len().median()
    return bool(words >= TEXT_MIN_WORDS and values.nunique() >= len(values) / MAX_ROWS_PER_ID)


def infer_kind(column: pd.Series) -> FeatureKind:
    if pd.api.types.is_bool_dtype(column):
        return "categorical"
    if pd.api.types.is_numeric_dtype(column):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(column) or _looks_like_dates(column):
        return "datetime"
    if _mostly_numbers(column):
        return "numeric"  # a few stray strings fail validation instead of turning it categorical
    if _looks_like_text(column):
        return "text"
    return "categorical"


def id_like(column: pd.Series) -> str | None:
    """Why a column of short strings looks like names or IDs rather than categories, or None.

    So many distinct values that each is seen in at most MAX_ROWS_PER_ID rows on average:
    customer names, ticket numbers, e-mail addresses. (Longer values are free text, see
    `_looks_like_text`.) One-hot encoding them would give the model a column per row to
    memorise.
    """
    values = column.dropna().astype(str)
    distinct = values.nunique()
    if distinct < MIN_ID_VALUES or distinct * MAX_ROWS_PER_ID < len(values):
        return None
    if distinct == len(values):
        return f"every one of its {distinct} values is distinct: it looks like an ID"
    return (
        f"{distinct} distinct values in {len(values)} rows: it looks like a name or an ID, "
        "not a category"
    )


def infer_features(
    df: pd.DataFrame, problem: ProblemConfig
) -> tuple[dict[str, FeatureKind], dict[str, str]]:
    """The features to model and, for every other column but the target, why it is left out.

    `features` in problem.yaml, when given, decides alone; otherwise kinds are inferred from
    the data, without the columns listed in `drop` and those that look like names or IDs.
    """
    target = problem.target.name
    others = [name for name in df.columns if name != target]
    if problem.features is not None:
        reason = "not listed in `features` in problem.yaml"
        return dict(problem.features), {n: reason for n in others if n not in problem.features}
    features: dict[str, FeatureKind] = {}
    dropped = {name: "listed in `drop` in problem.yaml" for name in problem.drop}
    for name in others:
        if name in dropped:
            continue
        kind = infer_kind(df[name])
        reason = id_like(df[name]) if kind == "categorical" else None
{%- if cookiecutter.problem_type == "anomaly_detection" %}
        if kind == "text":
            reason = "free text: the detectors read numbers, categories and dates, not text"
{%- endif %}
        if reason:
            dropped[name] = reason
        else:
            features[name] = kind
    return features, dropped


def resolve_features(df: pd.DataFrame, problem: ProblemConfig) -> dict[str, FeatureKind]:
    """The features to model: declared in problem.yaml, or inferred from the data."""
    check_columns(df, problem)
    features, dropped = infer_features(df, problem)
    if problem.features is not None:
        return features
    for name, reason in dropped.items():
        if name not in problem.drop:
            log.warning("column %r left out: %s; to keep it, set `features`", name, reason)
    summary = ", ".join(f"{name}={kind}" for name, kind in features.items())
    log.info(
        "inferred %d features (set `features` in problem.yaml to fix them): %s",
        len(features),
        summary,
    )
    return features


def dropped_columns(df: pd.DataFrame, problem: ProblemConfig) -> dict[str, str]:
    """Every column of the data that is neither a feature nor the target, with the reason."""
    return infer_features(df, problem)[1]


def check_columns(df: pd.DataFrame, problem: ProblemConfig) -> None:
    """The target and every column named in `features` and `drop` exist in the data."""
    if problem.target.name is not None and problem.target.name not in df.columns:
        raise DataError(
            f"problem.yaml target.name: {problem.target.name!r} is not a column of the data; "
            f"columns are: {', '.join(map(str, df.columns))}"
        )
    unknown = [c for c in [*(problem.features or {}), *problem.drop] if c not in df.columns]
    if unknown:
        raise DataError(
            f"problem.yaml features/drop: {', '.join(map(repr, unknown))} not in the data; "
            f"columns are: {', '.join(map(str, df.columns))}"
        )
{%- if cookiecutter.problem_type == "anomaly_detection" %}
    text = [name for name, kind in (problem.features or {}).items() if kind == "text"]
    if text:
        raise DataError(
            f"problem.yaml features: {', '.join(map(repr, text))} declared text, which the "
            "detectors cannot read; declare them categorical or put them in `drop`"
        )
{%- endif %}


def normalise_types(df: pd.DataFrame, features: dict[str, FeatureKind]) -> pd.DataFrame:
    """Numbers as floats and categories as text (see `category_text`), so mixed-type columns
    store and model alike, and the API finds the same categories."""
    out = df.copy()
    for name, kind in features.items():
        if kind == "numeric":
            out[name] = pd.to_numeric(out[name]).astype(float)
        elif kind == "categorical":
            out[name] = out[name].map(category_text, na_action="ignore").astype(object)
        elif kind == "text":
            out[name] = out[name].astype(str).where(out[name].notna())
    return out


@dataclass(frozen=True)
class CleaningReport:
    rows_in: int
    duplicates: int
    missing_target: int
    rows_out: int


def clean(df: pd.DataFrame, target: str | None) -> tuple[pd.DataFrame, CleaningReport]:
    """Drop exact duplicate rows and rows without a target (if there is one)."""
    deduplicated = df.drop_duplicates()
    labelled = deduplicated if target is None else deduplicated[deduplicated[target].notna()]
    report = CleaningReport(
        rows_in=len(df),
        duplicates=len(df) - len(deduplicated),
        missing_target=len(deduplicated) - len(labelled),
        rows_out=len(labelled),
    )
    return labelled.reset_index(drop=True), report


def row_keys(df: pd.DataFrame) -> pd.Series:
    """A content hash per row, used to keep test rows out of every later training set."""
    return pd.util.hash_pandas_object(df, index=False)


def split(
    df: pd.DataFrame, strata: pd.Series | None, params: SplitParams
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A seeded train/test split; stratified when `strata` is given."""
    if strata is not None and strata.value_counts().min() < 2:
        rare = strata.value_counts().idxmin()
        raise DataError(
            f"split: stratum {rare!r} has fewer than 2 rows; set split.stratify to false"
        )
    train, test = train_test_split(
        df, test_size=params.test_size, random_state=params.seed, stratify=strata
    )
    return train.reset_index(drop=True), test.reset_index(drop=True)


def exclude(df: pd.DataFrame, held_out: pd.DataFrame) -> pd.DataFrame:
    """Rows of `df` that are not in `held_out` (compared by content)."""
    keep = ~row_keys(df).isin(set(row_keys(held_out[df.columns])))
    return df[keep.to_numpy()].reset_index(drop=True)


class DateParts(TransformerMixin, BaseEstimator):
    """Expand date columns into year, month, day and weekday numbers (see `parse_date`)."""

    def fit(self, X, y=None):
        self.feature_names_in_ = np.asarray(pd.DataFrame(X).columns, dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        return self

    def transform(self, X):
        frame = pd.DataFrame(X, columns=self.feature_names_in_)
        parts = {}
        for name in self.feature_names_in_:
            dates = parse_dates(frame[name])
            for part in DATE_PARTS:
                parts[f"{name}_{part}"] = getattr(dates.dt, part).astype(float)
        return pd.DataFrame(parts).to_numpy()

    def get_feature_names_out(self, input_features=None):
        return np.asarray(
            [f"{n}_{p}" for n in self.feature_names_in_ for p in DATE_PARTS], dtype=object
        )


def build_preprocessor(
    features: dict[str, FeatureKind], params: PreprocessingParams
) -> ColumnTransformer:
    """Imputation, scaling and one-hot encoding, fitted inside the model pipeline."""
    numeric_steps = [("impute", SimpleImputer(strategy=params.numeric_imputer))]
    if params.scaler != "none":
        numeric_steps.append(("scale", SCALERS[params.scaler]()))
    categorical = Pipeline(
        [
            ("to_text", _ToText()),
            ("impute", SimpleImputer(strategy="constant", fill_value="(missing)")),
            (
                "encode",
                OneHotEncoder(
                    handle_unknown="infrequent_if_exist",
                    min_frequency=params.min_category_frequency,
                    sparse_output=False,
                ),
            ),
        ]
    )
    dates = Pipeline([("parts", DateParts()), ("impute", SimpleImputer(strategy="median"))])
    by_kind = {
        "numeric": Pipeline(numeric_steps),
        "categorical": categorical,
        "datetime": dates,
    }
    transformers = [
        (kind, transformer, [name for name, k in features.items() if k == kind])
        for kind, transformer in by_kind.items()
        if kind in features.values()
    ]
    # TF-IDF reads one column of strings: each text column gets its own vocabulary.
    transformers += [
        (f"text_{name}", text_pipeline(params), name)
        for name, kind in features.items()
        if kind == "text"
    ]
    return ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False)


def fill_missing_text(texts) -> pd.Series:
    """Missing texts as empty strings, which TF-IDF turns into all-zero rows."""
    return pd.Series(texts, dtype=object).fillna("").astype(str)


_ANALYZER = TfidfVectorizer(strip_accents="unicode").build_analyzer()


def tokenize(text: str) -> list[str]:
    """The words of a text as TF-IDF sees them: lower case, accents stripped, 2+ letters."""
    return _ANALYZER(text)


def text_pipeline(params: PreprocessingParams) -> Pipeline:
    """Words (and word sequences) weighted by TF-IDF, fitted on the training texts only."""
    vectorizer = TfidfVectorizer(
        ngram_range=(1, params.text_ngram_max),
        min_df=params.text_min_df,
        strip_accents="unicode",
        sublinear_tf=True,
    )
    fill = FunctionTransformer(fill_missing_text, feature_names_out="one-to-one")
    return Pipeline([("fill", fill), ("tfidf", vectorizer)])


class _ToText(TransformerMixin, BaseEstimator):
    """Categories as plain Python strings, with missing values as NaN for the imputer."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        frame = pd.DataFrame(X)
        return frame.astype(str).where(frame.notna(), np.nan).to_numpy(dtype=object)

    def get_feature_names_out(self, input_features=None):
        return np.asarray(input_features, dtype=object)


def model_pipeline(
    features: dict[str, FeatureKind], params: PreprocessingParams, estimator
) -> Pipeline:
    return Pipeline([("preprocess", build_preprocessor(features, params)), ("model", estimator)])


TRAIN_FILE, TEST_FILE, FEATURES_FILE, SPLIT_FILE = (
    "train.parquet",
    "test.parquet",
    "features.json",
    "split.json",
)


def prepare(raw: pd.DataFrame, problem: ProblemConfig, params: Params, processed_dir: Path) -> dict:
    """Validate, clean and split the raw data into processed_dir.

    The test set is written once and reused while the source stays the same, so every later
    run is evaluated on the same rows; new data only ever reaches the training set.
    """
    features = resolve_features(raw, problem)
    validate(raw, problem, params, features)
    target = problem.target.name
    columns = [*features, *([target] if target is not None else [])]
    cleaned, report = clean(normalise_types(raw[columns], features), target)
    log.info(
        "cleaning: %d rows in, %d duplicates and %d without a target removed, %d rows out",
        report.rows_in,
        report.duplicates,
        report.missing_target,
        report.rows_out,
    )
    processed_dir.mkdir(parents=True, exist_ok=True)
    test_path, split_path = processed_dir / TEST_FILE, processed_dir / SPLIT_FILE
    source = problem.source.model_dump(mode="json")
    previous = json.loads(split_path.read_text()) if split_path.exists() else None

    if previous and previous["source"] == source and test_path.exists():
        test = pd.read_parquet(test_path)
        if set(test.columns) != set(cleaned.columns):
            raise DataError(
                f"{test_path} has columns {sorted(test.columns)} but the data now has "
                f"{sorted(cleaned.columns)}; move the old test set away to start a new one"
            )
        train = exclude(cleaned, test)
        log.info(
            "reusing the test set of %s (%d rows); %d training rows",
            previous["written_at"],
            len(test),
            len(train),
        )
    else:
        if test_path.exists():
            archive = processed_dir / "archive"
            archive.mkdir(exist_ok=True)
            stamp = previous["written_at"].replace(":", "") if previous else "unknown"
            os.replace(test_path, archive / f"test-{stamp}.parquet")
            log.warning("the source changed: archived the old test set and wrote a new one")
        stratify = params.split.stratify and target is not None
        strata = task.strata(cleaned[target]) if stratify else None
        train, test = split(cleaned, strata, params.split)
        test.to_parquet(test_path, index=False)
        write_json(
            split_path,
            {
                "source": source,
                "test_rows": len(test),
                "test_size": params.split.test_size,
                "seed": params.split.seed,
                "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            },
        )
        log.info(
            "new split: %d training rows, %d test rows (seed %d)",
            len(train),
            len(test),
            params.split.seed,
        )

    train.to_parquet(processed_dir / TRAIN_FILE, index=False)
    # a list of pairs keeps the column order that the model was trained with
    write_json(
        processed_dir / FEATURES_FILE,
        {
            "target": target,
            "features": list(features.items()),
            "dropped": dropped_columns(raw, problem),
        },
    )
    return {"cleaning": asdict(report), "train_rows": len(train), "test_rows": len(test)}


def read_processed(
    processed_dir: Path,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, FeatureKind]]:
    """The training set, the fixed test set and the feature schema written by `prepare`."""
    paths = [processed_dir / name for name in (TRAIN_FILE, TEST_FILE, FEATURES_FILE)]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise DataError(f"{', '.join(missing)} missing: run `prepare` first")
    features = dict(json.loads(paths[2].read_text())["features"])
    return pd.read_parquet(paths[0]), pd.read_parquet(paths[1]), features
