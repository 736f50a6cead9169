"""Stage 3 for row types: feature inference, cleaning, the train/test split and the
preprocessing pipeline (`rows.RowProblemType` calls it)."""

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

from .bundle import write_json
from .config import FeatureKind, Params, PreprocessingParams, ProblemConfig, SplitParams
from .data import (
    ROW_ID,
    SPLIT_FILE,
    TEST_FILE,
    row_content,
    row_ids,
    validate,
    write_processed,
)
from .errors import DataError
{%- if cookiecutter.deep_learning == "yes" and cookiecutter.problem_type != "anomaly_detection" %}
from .neural import NetworkEstimator
{%- endif %}
from .problem_type import PROBLEM_TYPE
{%- if cookiecutter.deep_learning == "yes" and cookiecutter.problem_type != "anomaly_detection" %}
from .row_networks import NetworkPipeline
{%- endif %}

log = logging.getLogger(__name__)

SCALERS = {"standard": StandardScaler, "robust": RobustScaler, "minmax": MinMaxScaler}
DATE_PARTS = ("year", "month", "day", "day_of_week")
#: how the data's kinds of column are named when a problem type's models do not read one
KIND_NOUNS = {
    "numeric": "numbers",
    "categorical": "categories",
    "datetime": "dates",
    "text": "free text",
}


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


def _listed(words, conjunction: str = "and") -> str:
    """Words as a sentence lists them: "numbers, categories and dates"."""
    *first, last = words
    return f"{', '.join(first)} {conjunction} {last}" if first else last


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
    targets = PROBLEM_TYPE.target_columns(problem.target)
    others = [name for name in df.columns if name not in targets]
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
        if kind not in PROBLEM_TYPE.feature_kinds:
            readable = _listed(KIND_NOUNS[k] for k in PROBLEM_TYPE.feature_kinds)
            reason = f"{KIND_NOUNS[kind]}: the models read {readable}, not {kind}"
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
    """The target and every column named in `features` and `drop` exist in the data, and
    every declared feature is of a kind the models read."""
    for name in PROBLEM_TYPE.target_columns(problem.target):
        if name not in df.columns:
            raise DataError(
                f"problem.yaml target.name: {name!r} is not a column of the data; "
                f"columns are: {', '.join(map(str, df.columns))}"
            )
    unknown = [c for c in [*(problem.features or {}), *problem.drop] if c not in df.columns]
    if unknown:
        raise DataError(
            f"problem.yaml features/drop: {', '.join(map(repr, unknown))} not in the data; "
            f"columns are: {', '.join(map(str, df.columns))}"
        )
    declared = problem.features or {}
    unread = [name for name, kind in declared.items() if kind not in PROBLEM_TYPE.feature_kinds]
    if unread:
        kinds = sorted({declared[name] for name in unread})
        raise DataError(
            f"problem.yaml features: {', '.join(map(repr, unread))} declared "
            f"{_listed(kinds)}, which the models cannot read; declare them "
            f"{_listed(PROBLEM_TYPE.feature_kinds, 'or')}, or put them in `drop`"
        )


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
    duplicates: int  # rows identical to an earlier raw row
    duplicates_dropped: int  # of those, removed (preprocessing.drop_duplicates)
    missing_target: int
    rows_out: int

    @property
    def duplicate_share(self) -> float:
        return self.duplicates / self.rows_in if self.rows_in else 0.0


def identified_rows(
    raw: pd.DataFrame, features: dict[str, FeatureKind], targets: list[str]
) -> pd.DataFrame:
    """The features and target columns of the raw rows, typed, indexed by row identity."""
    rows = normalise_types(raw[[*features, *targets]], features)
    rows.index = pd.Index(row_ids(raw).to_numpy(), name=ROW_ID)
    return rows


def clean(
    df: pd.DataFrame, targets: list[str], drop_duplicates: bool = False
) -> tuple[pd.DataFrame, CleaningReport]:
    """Drop rows missing a target column's value (see `ProblemType.target_columns`) and,
    only when asked, repeated rows.

    `df` is indexed by row identity (`data.row_ids`): a repeated row is a later copy of
    an identical raw row. Kept copies stay together on one side of the split."""
    repeated = row_content(df.index).duplicated().to_numpy()
    kept = df[~repeated] if drop_duplicates else df
    labelled = kept.dropna(subset=targets)
    report = CleaningReport(
        rows_in=len(df),
        duplicates=int(repeated.sum()),
        duplicates_dropped=len(df) - len(kept),
        missing_target=len(kept) - len(labelled),
        rows_out=len(labelled),
    )
    return labelled, report


def split(
    df: pd.DataFrame, strata: pd.Series | None, params: SplitParams
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A seeded train/test split of `df` (indexed by row identity), stratified when `strata`
    is given. Identical rows form one group that falls wholly on one side; both sets keep
    the order of `df`, so a reused split trains on exactly the same rows in the same order."""
    groups = row_content(df.index)
    first = ~groups.duplicated().to_numpy()
    group_strata = None if strata is None else pd.Series(strata).to_numpy()[first]
    if group_strata is not None and pd.Series(group_strata).value_counts().min() < 2:
        rare = pd.Series(group_strata).value_counts().idxmin()
        raise DataError(
            f"split: stratum {rare!r} has fewer than 2 distinct rows; set split.stratify to false"
        )
    try:
        _, test_groups = train_test_split(
            groups[first].to_numpy(),
            test_size=params.test_size,
            random_state=params.seed,
            stratify=group_strata,
        )
    except ValueError as exc:
        raise DataError(f"split: {len(df)} rows cannot be split: {exc}") from exc
    in_test = groups.isin(set(test_groups)).to_numpy()
    return df[~in_test], df[in_test]


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
    steps = [("preprocess", build_preprocessor(features, params)), ("model", estimator)]
{%- if cookiecutter.deep_learning == "yes" and cookiecutter.problem_type != "anomaly_detection" %}
    if isinstance(estimator, NetworkEstimator):
        return NetworkPipeline(steps)  # the network embeds each one-hot and text block
{%- endif %}
    return Pipeline(steps)


CLEANING_FILE = "cleaning.json"


def prepare(raw: pd.DataFrame, problem: ProblemConfig, params: Params, processed_dir: Path) -> dict:
    """Validate, clean and split the raw data into processed_dir.

    Every raw row has an identity (`data.row_ids`). The test set is recorded once, as the
    identities of its rows in split.json, and both sets are rebuilt from the raw rows on
    every run: changing features, drop, kinds or preprocessing keeps exactly the same test
    rows, with the columns of the new configuration. New rows only ever reach training.
    """
    features = resolve_features(raw, problem)
    validate(raw, problem, params, features)
    targets = PROBLEM_TYPE.target_columns(problem.target)
    rows = identified_rows(raw, features, targets)
    cleaned, report = clean(rows, targets, params.preprocessing.drop_duplicates)
    _log_cleaning(report)
    processed_dir.mkdir(parents=True, exist_ok=True)
    train, test = _train_and_test(cleaned, problem, params, processed_dir)
    write_processed(
        processed_dir, train, test, features, problem.target.name, dropped_columns(raw, problem)
    )
    summary = {
        "cleaning": {**asdict(report), "duplicate_share": round(report.duplicate_share, 4)},
        "train_rows": len(train),
        "test_rows": len(test),
    }
    write_json(processed_dir / CLEANING_FILE, summary)
    return summary


def _log_cleaning(report: CleaningReport) -> None:
    if report.duplicates_dropped:
        log.warning(
            "cleaning: dropped %d repeated rows (%.1f%% of %d), as preprocessing.drop_duplicates "
            "asks",
            report.duplicates_dropped,
            100 * report.duplicate_share,
            report.rows_in,
        )
    elif report.duplicates:
        log.info(
            "cleaning: %d rows (%.1f%%) repeat an earlier row; kept, each group on one side of "
            "the split (preprocessing.drop_duplicates: true drops them)",
            report.duplicates,
            100 * report.duplicate_share,
        )
    log.info(
        "cleaning: %d rows in, %d without a target removed, %d rows out",
        report.rows_in,
        report.missing_target,
        report.rows_out,
    )


def _train_and_test(
    cleaned: pd.DataFrame, problem: ProblemConfig, params: Params, processed_dir: Path
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The recorded test rows while `source` stays the same, and rows added since split by
    the same rule (see `_split_new_rows`); otherwise a new split."""
    split_path = processed_dir / SPLIT_FILE
    source = problem.source.model_dump(mode="json")
    previous = json.loads(split_path.read_text()) if split_path.exists() else None
    if previous and previous["source"] == source and "test_ids" in previous:
        train, test = _recorded_split(cleaned, previous, params.split)
        if len(test):
            return _split_new_rows(cleaned, train, test, previous, problem, params, split_path)
        _archive(processed_dir, previous, "none of the recorded test rows is left in the data")
    elif previous:
        reason = "the source changed" if previous["source"] != source else "no row identities"
        _archive(processed_dir, previous, reason)
    train, test = split(cleaned, _strata(cleaned, problem, params), params.split)
    record = {"source": source, "test_size": params.split.test_size, "seed": params.split.seed}
    record["written_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    _write_split(split_path, record, train, test)
    log.info(
        "new split: %d training rows, %d test rows (seed %d)",
        len(train),
        len(test),
        params.split.seed,
    )
    return train, test


def _strata(rows: pd.DataFrame, problem: ProblemConfig, params: Params) -> pd.Series | None:
    truth = PROBLEM_TYPE.truth(rows, problem.target)
    return PROBLEM_TYPE.strata(truth) if params.split.stratify else None


def _write_split(path: Path, record: dict, train: pd.DataFrame, test: pd.DataFrame) -> None:
    """The split record: every row identity on its side, so later rows are told apart."""
    record = {**record, "test_rows": len(test), "test_ids": sorted(test.index)}
    write_json(path, {**record, "train_ids": sorted(train.index)})


def _split_new_rows(cleaned, train, test, record, problem, params, split_path):
    """Rows that arrived since the split (new content: an upload, new rows at the source)
    are split by the same rule and recorded, so the test set keeps pace with the data and
    the gate judges a retrained model on the new rows too. Recorded rows never change
    side. A record from before `train_ids` was kept treats every non-test row as known."""
    known = set(row_content(record.get("train_ids", train.index)))
    new = ~row_content(train.index).isin(known).to_numpy()
    if not new.any():
        if "train_ids" not in record:
            _write_split(split_path, record, train, test)
        return train, test
    try:
        _, new_test = split(train[new], _strata(train[new], problem, params), params.split)
    except DataError as exc:
        log.warning("%d new rows all train: too few to split (%s)", int(new.sum()), exc)
        new_test = train.iloc[:0]
    in_test = row_content(cleaned.index).isin(set(row_content([*test.index, *new_test.index])))
    train, test = cleaned[~in_test.to_numpy()], cleaned[in_test.to_numpy()]
    added = {"extended_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    _write_split(split_path, {**record, **added}, train, test)
    log.info(
        "%d new rows since the split: %d to the test set, %d to training",
        int(new.sum()),
        len(new_test),
        int(new.sum()) - len(new_test),
    )
    return train, test


def _recorded_split(
    cleaned: pd.DataFrame, record: dict, params: SplitParams
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and test rebuilt by row identity: every copy of a recorded test row is a test row."""
    in_test = row_content(cleaned.index).isin(set(row_content(record["test_ids"]))).to_numpy()
    train, test = cleaned[~in_test], cleaned[in_test]
    gone = len(set(record["test_ids"]) - set(test.index))
    if gone:
        log.warning(
            "%d of the %d recorded test rows are no longer in the cleaned data "
            "(removed from the source, or dropped by cleaning)",
            gone,
            len(record["test_ids"]),
        )
    if (record["seed"], record["test_size"]) != (params.seed, params.test_size):
        log.warning(
            "split.seed or split.test_size changed since %s; the recorded test set is kept "
            "(move %s away to draw a new one)",
            record["written_at"],
            SPLIT_FILE,
        )
    log.info(
        "reusing the test set of %s: %d test rows, %d training rows",
        record["written_at"],
        len(test),
        len(train),
    )
    return train, test


def _archive(processed_dir: Path, previous: dict, reason: str) -> None:
    """Move the old split record and test set aside before a new split replaces them."""
    archive = processed_dir / "archive"
    archive.mkdir(exist_ok=True)
    stamp = previous.get("written_at", "unknown").replace(":", "")
    for name in (SPLIT_FILE, TEST_FILE):
        if (processed_dir / name).exists():
            stem, suffix = name.split(".")
            os.replace(processed_dir / name, archive / f"{stem}-{stamp}.{suffix}")
    log.warning("%s: archived the old test set in %s and drew a new one", reason, archive)


def check_disjoint(train: pd.DataFrame, test: pd.DataFrame, processed_dir: Path) -> None:
    """Refuse a training set that holds a test row, or a copy of one."""
    if train.index.name != ROW_ID or test.index.name != ROW_ID:
        raise DataError(
            f"{processed_dir} holds no row identities (written by an older version): "
            "run `prepare` again"
        )
    shared = set(row_content(train.index)) & set(row_content(test.index))
    if shared:
        leaked = int(row_content(test.index).isin(shared).sum())
        raise DataError(
            f"{processed_dir}: {leaked} test rows are also in the training set, e.g. row "
            f"{sorted(shared)[0]}; evaluation refused: run `prepare` again"
        )
