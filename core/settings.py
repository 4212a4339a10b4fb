"""Every setting of the service, read from the environment and `.env` (see `.env.example`)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = PROJECT_ROOT / "models" / "hemowatch-ich.onnx"


class Settings(BaseSettings):
    """Service configuration; each field is the lower-case name of its environment variable."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", env_ignore_empty=True, extra="ignore"
    )

    # --- Telegram -------------------------------------------------------------------------------
    telegram_bot_token: SecretStr | None = None
    telegram_api_url: str = "https://api.telegram.org"
    telegram_local_mode: bool = False  # a telegram-bot-api server started with --local on this machine
    admin_user_ids: Annotated[frozenset[int], NoDecode] = frozenset()
    webhook_url: str = ""  # empty: long polling
    webhook_listen: str = "0.0.0.0"
    webhook_port: int = 8443
    invite_ttl_hours: float = Field(72.0, gt=0)
    scan_concurrency: int = Field(2, ge=1)  # analyses running at once
    scan_rate_limit: int = Field(10, ge=1)  # scans per user per rate window
    scan_rate_window_s: float = Field(600.0, gt=0)

    # --- Storage --------------------------------------------------------------------------------
    hemowatch_db: Path = Path("hemowatch.db")
    retention_days: float = Field(30.0, gt=0)  # raw vitals older than this are pruned
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"  # FULL: a commit survives a power cut

    # --- MQTT -----------------------------------------------------------------------------------
    mqtt_url: str = ""  # empty: start the embedded broker
    mqtt_topic_prefix: str = "hemowatch"
    mqtt_client_id: str = "hemowatch-monitor"
    mqtt_ca_file: Path | None = None
    mqtt_shared_group: str = ""  # MQTT v5 shared subscription group; empty: plain subscription
    mqtt_max_payload_bytes: int = Field(4096, gt=0)
    embedded_broker_host: str = "127.0.0.1"
    embedded_broker_port: int = Field(1883, gt=0, lt=65536)

    # --- Alerting -------------------------------------------------------------------------------
    stale_after_s: float = Field(300.0, gt=0)  # no vitals this long: "sensor offline"
    escalate_after_s: float = Field(300.0, gt=0)  # urgent/emergency unacknowledged this long
    sbp_ceiling: float = Field(160.0, gt=0)  # mmHg, neuro rule for haemorrhage patients
    rule_hold_s: float = Field(30.0, ge=0)  # a vital must stay out of range this long before an alert
    alert_reopen_s: float = Field(600.0, ge=0)  # a condition back this soon after resolving re-opens its alert
    device_clock_tolerance_s: float = Field(30.0, gt=0)  # a stamp further ahead: judged on arrival time

    # --- Inference ------------------------------------------------------------------------------
    hemowatch_model: Path = DEFAULT_MODEL
    inference_threads: int = Field(2, ge=1)
    max_upload_mb: float = Field(100.0, gt=0)
    scan_memory_limit_mb: float = Field(1536.0, ge=700)  # address space of each scan analysis worker process
    max_slices: int = Field(600, ge=1)
    window_center: float = 40.0
    window_width: float = Field(80.0, gt=0)

    log_level: str = "INFO"

    @field_validator("admin_user_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(int(part) for part in value.replace(";", ",").split(",") if part.strip())
        return value

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
