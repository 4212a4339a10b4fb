"""Every setting of the service, read from the environment and `.env` (see `.env.example`).

`.env` is looked for in the current directory, then in the project root; the environment wins over both. Each
command validates only the settings it uses: `hemowatch classify` reads `ScanSettings`, so a mistake in, say, an
alerting setting does not stop it. A wrong value becomes `SettingsError`, one line naming the setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.roles import TELEGRAM_ID

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = PROJECT_ROOT / "models" / "hemowatch-ich.onnx"
# Where `.env` is looked for; a later file wins, so the current directory's overrides the project root's.
ENV_FILES = (PROJECT_ROOT / ".env", Path(".env"))


def env_files_looked_at() -> str:
    """The `.env` files looked for, in the words of a message: the current directory first."""
    here, root = Path(".env").resolve(), (PROJECT_ROOT / ".env").resolve()
    return str(here) if here == root else f"{here} and {root}"


class SettingsError(Exception):
    """A setting with a wrong value; the message is one line naming the setting and what it should be."""


class ScanSettings(BaseSettings):
    """What scan analysis needs (all `hemowatch classify` reads); each field is the lower-case name of its
    environment variable."""

    model_config = SettingsConfigDict(
        env_file=ENV_FILES, env_file_encoding="utf-8", env_ignore_empty=True, extra="ignore"
    )

    hemowatch_model: Path = DEFAULT_MODEL
    inference_threads: int = Field(2, ge=1)
    max_upload_mb: float = Field(100.0, gt=0)
    max_slices: int = Field(600, ge=1)
    window_center: float | None = None  # with window_width, or neither: the model card's window
    window_width: float | None = Field(None, gt=0)
    hemowatch_db: Path = Path("hemowatch.db")  # also holds the site profile the verdicts use
    site_sensitivity: float = Field(0.95, gt=0.5, lt=1.0)  # what site commissioning chooses thresholds for

    log_level: str = "INFO"

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @model_validator(mode="after")
    def _window_set_whole(self) -> ScanSettings:
        if (self.window_center is None) != (self.window_width is None):
            raise ValueError("set WINDOW_CENTER and WINDOW_WIDTH together, or neither to use the model's window")
        return self


class Settings(ScanSettings):
    """Service configuration: scan analysis and everything else."""

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
    scan_memory_limit_mb: float = Field(1536.0, ge=700)  # address space of each scan analysis worker process

    # --- Storage --------------------------------------------------------------------------------
    retention_days: float = Field(30.0, gt=0)  # raw vitals older than this are pruned
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"  # FULL: a commit survives a power cut
    store_outage_notice_s: float = Field(30.0, gt=0)  # vitals failing to be stored this long: the admins are told

    # --- Health and metrics -------------------------------------------------------------------------
    metrics_port: int = Field(0, ge=0, lt=65536)  # /healthz and Prometheus /metrics; 0: not served
    metrics_host: str = "127.0.0.1"

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
    site_auto_update: bool = False  # refit the site profile nightly from doctors' reads; never adopts a worse one
    alert_reopen_s: float = Field(600.0, ge=0)  # a condition back this soon after resolving re-opens its alert
    device_clock_tolerance_s: float = Field(30.0, gt=0)  # a stamp further ahead: judged on arrival time

    # --- DICOM node -----------------------------------------------------------------------------
    dicom_ae_title: str = Field("HEMOWATCH", min_length=1, max_length=16)
    dicom_host: str = "127.0.0.1"  # 0.0.0.0 to take scanners on the network
    dicom_port: int = Field(11112, ge=0, lt=65536)  # 0: no DICOM node
    dicom_allowed_aes: Annotated[frozenset[str], NoDecode] = frozenset()  # calling AE titles; empty: any
    dicom_tls_cert: Path | None = None
    dicom_tls_key: Path | None = None
    dicom_tls_ca: Path | None = None  # set: senders must present a certificate this CA signed
    dicom_spool_dir: Path | None = None  # None: "dicom-spool" next to the database
    dicom_spool_max_gb: float = Field(20.0, gt=0)
    dicom_max_instance_mb: float = Field(512.0, gt=0)  # a larger instance aborts its association
    dicom_series_idle_s: float = Field(10.0, gt=0)  # a series is complete after this long without instances
    dicom_notify_fields: Annotated[frozenset[str], NoDecode] = frozenset({"accession"})  # or "none"
    dicom_threshold: float | None = Field(None, gt=0, lt=1)  # None: the model card's threshold
    dicom_result_destination: str = ""  # AE@HOST:PORT that gets each result as a Secondary Capture; empty: none

    @field_validator("admin_user_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [part.strip() for part in value.replace(";", ",").split(",") if part.strip()]
            if not all(TELEGRAM_ID.fullmatch(part) for part in parts):
                raise ValueError("should be Telegram user ids (numbers) separated by commas, e.g. 123456789,987654321")
            return frozenset(int(part) for part in parts)
        return value

    @field_validator("mqtt_url")
    @classmethod
    def _broker_url(cls, value: str) -> str:
        if value and not value.startswith(("mqtt://", "mqtts://")):
            raise ValueError("should look like mqtt://host:1883 or mqtts://user:password@host:8883 (empty: the "
                             "embedded broker)")
        return value

    @field_validator("dicom_allowed_aes", "dicom_notify_fields", mode="before")
    @classmethod
    def _split_words(cls, value: object) -> object:
        if isinstance(value, str):
            words = {part.strip() for part in value.replace(";", ",").split(",") if part.strip()}
            return frozenset(words - {"none"})
        return value

    @property
    def spool_dir(self) -> Path:
        """Where received DICOM instances wait for analysis."""
        return self.dicom_spool_dir or self.hemowatch_db.parent / "dicom-spool"


AnySettings = TypeVar("AnySettings", bound=ScanSettings)


def read_settings(kind: type[AnySettings]) -> AnySettings:
    """The settings of `kind` from the environment and `.env`; SettingsError names a wrong one in one line."""
    try:
        return kind()
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        which = f"The setting {str(first['loc'][0]).upper()} is" if first["loc"] else "Settings are"
        reason = first["msg"].removeprefix("Value error, ")
        others = error.error_count() - 1
        more = f" ({others} more setting{'s' * (others > 1)} wrong too)" if others else ""
        raise SettingsError(
            f"{which} wrong: {reason[0].lower()}{reason[1:]}{more}. It comes from the environment "
            f"or a .env file (looked for: {env_files_looked_at()}); .env.example describes every setting."
        ) from None
