"""Service settings, read from SERVICE_* environment variables."""

from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_KEY_CHARS = 16


class Settings(BaseSettings):
    """Service settings, read from SERVICE_* environment variables.

    Three keys, three roles: SERVICE_API_KEY for prediction clients; SERVICE_VIEWER_KEY to
    see the dashboard; SERVICE_OPERATOR_KEY to see it and act in its console. The API key
    does not open the dashboard.

    The prediction log holds every request body as it was sent: the features may be
    personal data. Name such fields in SERVICE_PREDICTION_LOG_REDACT to log them as
    "[redacted]", or switch the log off with SERVICE_PREDICTION_LOG=false.
    """

    model_config = SettingsConfigDict(env_prefix="SERVICE_")

    models_dir: Path = Path("models")
    api_key: SecretStr | None = None
    viewer_key: SecretStr | None = None  # sees the dashboard
    operator_key: SecretStr | None = None  # sees the dashboard and acts in its console
    allow_anonymous: bool = False  # serve without a key; `make serve` sets it for local use
    public_docs: bool = False  # /docs, /redoc and /openapi.json without the key
    public_metrics: bool = False  # /metrics without the key
    max_batch_rows: int = Field(1000, ge=1)
    max_body_bytes: int = Field(5_000_000, ge=1024)
    prediction_log: bool = True
    prediction_log_path: Path = Path("logs/predictions.jsonl")
    prediction_log_max_bytes: int = Field(100_000_000, ge=1024)  # rotate past this size
    prediction_log_backups: int = Field(5, ge=0)  # rotated files kept: predictions.jsonl.1 ...
    prediction_log_max_value_chars: int = Field(1000, ge=1)  # longer strings are cut in the log
    prediction_log_redact: str = ""  # comma-separated field names logged as "[redacted]"
    reload_interval: float = Field(10.0, ge=0)  # seconds between pointer checks; 0 turns off
    reports_dir: Path = Path("reports")  # the dashboard shows reports/monitoring/latest.json
    docs_dir: Path = Path("docs")  # the dashboard links the runbook found here
    project_dir: Path = Path(".")  # the console uploads and retrains in this project
    max_upload_bytes: int = Field(50_000_000, ge=1024)  # the console's upload limit
    audit_log_path: Path = Path("logs/audit.jsonl")  # every console action, appended
    jobs_dir: Path = Path("logs/jobs")  # console retrains: their state and log
    trends_interval: float = Field(60.0, gt=0)  # seconds between traffic samples for the chart
    latency_budget_ms: float = Field(500.0, gt=0)  # p95 of predictions above it is an alert

    @field_validator("api_key", "viewer_key", "operator_key")
    @classmethod
    def _long_enough(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and len(key.get_secret_value()) < MIN_KEY_CHARS:
            raise ValueError(
                f"{len(key.get_secret_value())} characters; an API key needs {MIN_KEY_CHARS} "
                "or more (an empty key does not turn authentication off)"
            )
        return key

    @model_validator(mode="after")
    def _key_or_anonymous(self) -> "Settings":
        if self.api_key is None and not self.allow_anonymous:
            raise ValueError(
                f"set SERVICE_API_KEY ({MIN_KEY_CHARS} characters or more), or "
                "SERVICE_ALLOW_ANONYMOUS=true to serve without a key"
            )
        keys = [k.get_secret_value() for k in self.keys.values() if k is not None]
        if len(set(keys)) < len(keys):
            raise ValueError(
                "SERVICE_API_KEY, SERVICE_VIEWER_KEY and SERVICE_OPERATOR_KEY must differ: "
                "a shared key cannot tell the roles apart"
            )
        return self

    @property
    def keys(self) -> dict[str, SecretStr | None]:
        """Each role's key: client, viewer, operator."""
        return {"client": self.api_key, "viewer": self.viewer_key, "operator": self.operator_key}

    @property
    def redacted_fields(self) -> frozenset[str]:
        return frozenset(name.strip() for name in self.prediction_log_redact.split(",")) - {""}


def from_environment() -> Settings:
    """The settings of the environment; SystemExit with one line saying what is wrong."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = [
            f"{'SERVICE_' + str(error['loc'][0]).upper() + ': ' if error['loc'] else ''}"
            f"{error['msg'].removeprefix('Value error, ')}"
            for error in exc.errors()
        ]
        raise SystemExit(f"invalid service settings: {'; '.join(problems)}") from None
