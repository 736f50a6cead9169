"""Service settings, read from SERVICE_* environment variables."""

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Service settings, read from SERVICE_* environment variables."""

    model_config = SettingsConfigDict(env_prefix="SERVICE_")

    models_dir: Path = Path("models")
    api_key: SecretStr | None = None
    max_batch_rows: int = Field(1000, ge=1)
    max_body_bytes: int = Field(5_000_000, ge=1024)
    prediction_log: bool = True
    prediction_log_path: Path = Path("logs/predictions.jsonl")
    reload_interval: float = Field(10.0, ge=0)  # seconds between pointer checks; 0 turns off
    reports_dir: Path = Path("reports")  # the dashboard shows reports/monitoring/latest.json
    docs_dir: Path = Path("docs")  # the dashboard links the runbook found here
