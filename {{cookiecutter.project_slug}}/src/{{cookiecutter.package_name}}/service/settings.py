"""Service settings, read from SERVICE_* environment variables."""

from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_KEY_CHARS = 16


class Settings(BaseSettings):
    """Service settings, read from SERVICE_* environment variables.

    The prediction log holds every request body as it was sent: the features may be
    personal data. Name such fields in SERVICE_PREDICTION_LOG_REDACT to log them as
    "[redacted]", or switch the log off with SERVICE_PREDICTION_LOG=false.
    """

    model_config = SettingsConfigDict(env_prefix="SERVICE_")

    models_dir: Path = Path("models")
    api_key: SecretStr | None = None
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

    @field_validator("api_key")
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
        return self

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
