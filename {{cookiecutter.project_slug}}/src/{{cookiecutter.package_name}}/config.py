"""Stage 1 contract: typed loading of configs/problem.yaml and configs/params.yaml."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import ConfigError
from .problem_type import PROBLEM_TYPE

FeatureKind = Literal["numeric", "categorical", "datetime", "text"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SampleSource(_Strict):
    kind: Literal["sample"]
    name: str = Field(description="A dataset bundled with a dependency.")

    @field_validator("name")
    @classmethod
    def _known_sample(cls, value: str) -> str:
        if value not in PROBLEM_TYPE.samples:
            raise ValueError(
                f"unknown sample {value!r}; valid choices: {', '.join(PROBLEM_TYPE.samples)}"
            )
        return value


class FileSource(_Strict):
    kind: Literal["file"]
    path: Path = Field(description="A .csv or .parquet file, relative to the project root.")

    @field_validator("path")
    @classmethod
    def _known_format(cls, value: Path) -> Path:
        if value.suffix.lower() not in {".csv", ".parquet"}:
            raise ValueError(
                f"unsupported file type {value.suffix!r}; valid choices: .csv, .parquet"
            )
        return value


class SqlSource(_Strict):
    """A query on a database, whose URL is written here (`url`) or, for any URL holding a
    password, read at run time from an environment variable (`url_env`)."""

    kind: Literal["sql"]
    url: str | None = Field(None, description="A SQLAlchemy URL, e.g. sqlite:///data/shop.db.")
    url_env: str | None = Field(None, description="The environment variable holding the URL.")
    query: str

    @model_validator(mode="after")
    def _one_url(self) -> SqlSource:
        if (self.url is None) == (self.url_env is None):
            raise ValueError(
                "set exactly one of url and url_env (the name of an environment variable "
                "holding the URL, for a URL with a password)"
            )
        return self

    def connection_url(self) -> str:
        """The URL to connect to, read from the environment when `url_env` names it."""
        if self.url is not None:
            return self.url
        url = os.environ.get(self.url_env, "")
        if not url:
            raise ConfigError(
                f"problem.yaml: source.url_env: the environment variable {self.url_env} is "
                "not set; set it to the database URL"
            )
        return url


Source = Annotated[SampleSource | FileSource | SqlSource, Field(discriminator="kind")]


class ProblemConfig(_Strict):
    """configs/problem.yaml: what the model must do and how success is judged."""

    problem_type: str
    target: PROBLEM_TYPE.TargetSpec
    features: dict[str, FeatureKind] | None = None
    drop: list[str] = []
    metric: str
    success_threshold: float
    source: Source

    @field_validator("problem_type")
    @classmethod
    def _matches_project(cls, value: str) -> str:
        if value != PROBLEM_TYPE.name:
            raise ValueError(f"this project was generated for {PROBLEM_TYPE.name!r}, got {value!r}")
        return value

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        if value not in PROBLEM_TYPE.metrics:
            raise ValueError(
                f"unknown metric {value!r}; valid choices: {', '.join(PROBLEM_TYPE.metrics)}"
            )
        return value


class SplitParams(_Strict):
    test_size: float = Field(0.25, gt=0, lt=1)
    seed: int = 42
    stratify: bool = True


class PreprocessingParams(_Strict):
    scaler: Literal["standard", "robust", "minmax", "none"] = "standard"
    numeric_imputer: Literal["mean", "median"] = "median"
    min_category_frequency: int = Field(1, ge=1)
    text_ngram_max: int = Field(2, ge=1)  # TF-IDF terms: words up to n-word sequences
    text_min_df: int = Field(2, ge=1)  # a term must appear in this many training texts
    drop_duplicates: bool = False  # drop later copies of identical raw rows (counted in the log)


class ValidationParams(_Strict):
    max_missing_share: float = Field(0.5, ge=0, le=1)


class ModelParams(_Strict):
    name: str
    params: dict[str, Any] = {}

    @field_validator("name")
    @classmethod
    def _known_model(cls, value: str) -> str:
        if value not in PROBLEM_TYPE.candidates:
            raise ValueError(
                f"unknown model {value!r}; valid choices: {', '.join(PROBLEM_TYPE.candidates)}"
            )
        return value


class BaselineParams(_Strict):
    strategy: str

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, value: str) -> str:
        if value not in PROBLEM_TYPE.baseline_strategies:
            choices = ", ".join(PROBLEM_TYPE.baseline_strategies)
            raise ValueError(f"unknown strategy {value!r}; valid choices: {choices}")
        return value


class CvParams(_Strict):
    folds: int = Field(5, ge=2)


class EvaluationParams(_Strict):
    bootstrap_resamples: int = Field(1000, ge=100)
    confidence: float = Field(0.95, gt=0, lt=1)


class GateParams(PROBLEM_TYPE.GateMinimums):
    """Below a minimum (the problem type's `GateMinimums`) the test set is too small to
    judge: the gate is inconclusive (exit 3)."""

    min_improvement: float = Field(0.0, ge=0)
    require_significant: bool = True


class MonitoringParams(_Strict):
    min_rows: int = Field(100, ge=1)
    psi_warn: float = Field(0.1, gt=0)
    psi_alarm: float = Field(0.2, gt=0)
    alpha: float = Field(0.01, gt=0, lt=1)
    ks_min_statistic: float = Field(0.1, gt=0, le=1)
    max_unseen_share: float = Field(0.05, ge=0, le=1)
    max_outside_share: float = Field(0.05, ge=0, le=1)
    max_missing_change: float = Field(0.1, ge=0, le=1)
    max_oov_change: float = Field(0.1, ge=0, le=1)
    max_metric_drop: float = Field(0.1, ge=0)


class SearchRange(_Strict):
    """One parameter's search space for `tune`: integers or floats between `low` and `high`
    (both ints: integers; `log`: sampled on a log scale), or one of `choices`."""

    low: int | float | None = None
    high: int | float | None = None
    log: bool = False
    choices: list[bool | int | float | str | None] | None = None  # what Optuna can store

    @model_validator(mode="after")
    def _one_kind(self) -> SearchRange:
        bounds = (self.low, self.high)
        if self.choices is not None:
            if bounds != (None, None) or self.log:
                raise ValueError("give either choices or low and high (with log), not both")
            if not self.choices:
                raise ValueError("choices is empty")
        elif None in bounds:
            raise ValueError("give low and high (a range) or choices (a list)")
        elif self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        elif self.log and self.low <= 0:
            raise ValueError("a log scale needs low above 0")
        return self

    @property
    def integer(self) -> bool:
        """Both bounds written as integers: the parameter takes integers."""
        return isinstance(self.low, int) and isinstance(self.high, int)


class TuneParams(_Strict):
    """`tune`: the search space of the candidate's params (model.params), by parameter."""

    space: dict[str, SearchRange] = {}


class Params(_Strict):
    """configs/params.yaml: every knob of stages 3 to 5, and of the drift monitor (stage 7)."""

    split: SplitParams = SplitParams()
    preprocessing: PreprocessingParams = PreprocessingParams()
    validation: ValidationParams = ValidationParams()
    model: ModelParams
    baseline: BaselineParams
    cv: CvParams = CvParams()
    evaluation: EvaluationParams = EvaluationParams()
    gate: GateParams = GateParams()
    monitoring: MonitoringParams = MonitoringParams()
    tune: TuneParams = TuneParams()


@dataclass(frozen=True)
class Paths:
    """Where each stage reads and writes, relative to one project root."""

    root: Path

    @property
    def problem(self) -> Path:
        return self.root / "configs" / "problem.yaml"

    @property
    def params(self) -> Path:
        return self.root / "configs" / "params.yaml"

    @property
    def raw(self) -> Path:
        return self.root / "data" / "raw"

    @property
    def processed(self) -> Path:
        return self.root / "data" / "processed"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def reports(self) -> Path:
        return self.root / "reports"


def _describe(error: ValidationError, model: type[BaseModel], path: Path) -> str:
    """Turn pydantic's report into one line per problem that names the key."""
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"] if not str(part).startswith("function-"))
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = (
                f"unknown key; valid keys here: {', '.join(_keys_at(model, item['loc'][:-1]))}"
            )
        lines.append(f"{path.name}: {key}: {message}")
    return "\n".join(lines)


def _keys_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """The keys allowed at `loc`, following nested models and the source kinds."""
    sources = {"sample": SampleSource, "file": FileSource, "sql": SqlSource}
    for part in loc:
        field = model.model_fields.get(str(part))
        if field and isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            model = field.annotation
        elif part in sources:
            model = sources[part]
    return list(model.model_fields)


def _read(path: Path) -> Any:
    if not path.exists():
        raise ConfigError(f"{path}: file not found")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path.name}: not valid YAML: {exc}") from exc


def _validate(model: type[BaseModel], data: Any, path: Path) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, model, path)) from exc


def unused_keys(data: Any) -> list[str]:
    """The keys set in params.yaml that this problem type never reads (its `unused_params`)."""
    if not isinstance(data, dict):
        return []
    found = []
    for entry in PROBLEM_TYPE.unused_params:
        section, _, key = entry.partition(".")
        values = data.get(section)
        if section in data and (not key or (isinstance(values, dict) and key in values)):
            found.append(entry)
    return found


def load_problem(path: Path) -> ProblemConfig:
    return _validate(ProblemConfig, _read(path), path)


def load_params(path: Path) -> Params:
    """params.yaml, refusing keys this problem type would silently ignore."""
    data = _read(path)
    unused = unused_keys(data)
    if unused:
        raise ConfigError(
            "\n".join(
                f"{path.name}: {key}: a {PROBLEM_TYPE.name} project does not use this key; "
                "remove it"
                for key in unused
            )
        )
    return _validate(Params, data, path)
