"""Stage 3: feature inference, cleaning, the train/test split and the preprocessing pipeline."""

from __future__ import annotations

import json
import logging
import os
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


def _looks_like_dates(column: pd.Series) -> bool:
    values = column.dropna()
    if values.empty:
        return False
    parsed = pd.to_datetime(values.astype(str), errors="coerce", format="ISO8601")
    return bool(parsed.notna().mean() >= 0.95)


def _mostly_numbers(column: pd.Series) -> bool:
    values = column.dropna()
    return not values.empty and pd.to_numeric(values, errors="coerce").notna().mean() >= 0.95


def _looks_like_text(column: pd.Series) -> bool:
    """Free text: several words per value, and most values distinct (unlike categories)."""
    values = column.dropna().astype(str)
    if values.empty:
        return False
    return bool(values.str.split().str.len().median() >= 3 and values.nunique() >= len(values) / 2)


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


def resolve_features(df: pd.DataFrame, problem: ProblemConfig) -> dict[str, FeatureKind]:
    """The features to model: declared in problem.yaml, or inferred from the data."""
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
    if problem.features is not None:
        return dict(problem.features)

    features: dict[str, FeatureKind] = {}
    for name in df.columns:
        if name == problem.target.name or name in problem.drop:
            continue
        kind = infer_kind(df[name])
        if kind == "categorical" and len(df) > 20 and df[name].nunique() == len(df):
            log.warning("column %r: every value is unique, so it looks like an ID; left out", name)
            continue
        features[name] = kind
    summary = ", ".join(f"{name}={kind}" for name, kind in features.items())
    log.info(
        "inferred %d features (set `features` in problem.yaml to fix them): %s",
        len(features),
        summary,
    )
    return features


def normalise_types(df: pd.DataFrame, features: dict[str, FeatureKind]) -> pd.DataFrame:
    """Numbers as floats and categories as text, so mixed-type columns store and model alike."""
    out = df.copy()
    for name, kind in features.items():
        if kind == "numeric":
            out[name] = pd.to_numeric(out[name]).astype(float)
        elif kind in ("categorical", "text"):
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
    """Expand date columns into year, month, day and weekday numbers."""

    def fit(self, X, y=None):
        self.feature_names_in_ = np.asarray(pd.DataFrame(X).columns, dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        return self

    def transform(self, X):
        frame = pd.DataFrame(X, columns=self.feature_names_in_)
        parts = {}
        for name in self.feature_names_in_:
            dates = pd.to_datetime(frame[name].astype(str), errors="coerce", format="ISO8601")
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
        processed_dir / FEATURES_FILE, {"target": target, "features": list(features.items())}
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
