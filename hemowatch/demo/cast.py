"""Who and what the demo starts with: three people, one simulated patient, four example slices, and the
settings that put the service on the local Bot API server, a fresh database, and the embedded broker and the
DICOM node on ports of their own."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from pathlib import Path

from core.roles import Role
from core.settings import ScanSettings, Settings
from store import open_database, patients, people

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
EXAMPLES_DOI = "10.13026/w8q8-ky94"  # the collection the example slices come from (examples/ATTRIBUTION.md)
BOT_TOKEN = "424242:DEMO-local-bot-api"  # only the local Bot API server knows it
PATIENT_ID = "demo-1"
PATIENT_NAME = "Simulated patient"
RULE_HOLD_S = 10.0  # the service's default is 30 s; shorter, so the deterioration alerts within a minute
ESCALATE_AFTER_S = 60.0  # the service's default is 5 minutes


@dataclass(frozen=True, slots=True)
class DemoPerson:
    telegram_id: int
    name: str
    role: Role


@dataclass(frozen=True, slots=True)
class Example:
    file: str
    title: str  # the collection's label, shown on the page


ADMIN = DemoPerson(1001, "Alex", Role.ADMIN)
DOCTOR = DemoPerson(1002, "Dr Morgan", Role.DOCTOR)
CAREGIVER = DemoPerson(1003, "Sam", Role.CAREGIVER)
PEOPLE = (DOCTOR, CAREGIVER, ADMIN)

EXAMPLES = (  # with the collection's labels (see examples/ATTRIBUTION.md)
    Example("patient071-slice13.jpg", "Patient 71, slice 13: intraparenchymal and subdural haemorrhage"),
    Example("patient084-slice21.jpg", "Patient 84, slice 21: subarachnoid haemorrhage"),
    Example("patient054-slice15.jpg", "Patient 54, slice 15: no haemorrhage"),
    Example("patient050-slice20.jpg", "Patient 50, slice 20: intraparenchymal haemorrhage"),
)


def examples_in_training_data(model_path: Path) -> bool:
    """Whether the model card beside `model_path` names the examples' collection among the model's training data:
    then what the model says of them shows nothing of how well it does."""
    card = json.loads(model_path.with_suffix(".json").read_text(encoding="utf-8"))
    return any(EXAMPLES_DOI in source.get("citation", "") for source in card.get("training_data", []))


def free_port() -> int:
    """A TCP port nothing listens on now, on the loopback interface."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def demo_settings(
    scan: ScanSettings, data_dir: Path, bot_api_url: str, broker_port: int, dicom_port: int
) -> Settings:
    """The service's settings for the demo: scan settings as configured, everything else the demo's own."""
    return Settings(
        _env_file=None,
        **scan.model_dump(exclude={"hemowatch_db"}),
        telegram_bot_token=BOT_TOKEN,
        telegram_api_url=bot_api_url,
        telegram_local_mode=False,
        admin_user_ids=frozenset({ADMIN.telegram_id}),
        webhook_url="",
        hemowatch_db=data_dir / "demo.db",
        mqtt_url="",
        mqtt_ca_file=None,
        mqtt_shared_group="",
        embedded_broker_host="127.0.0.1",
        embedded_broker_port=broker_port,
        dicom_host="127.0.0.1",
        dicom_port=dicom_port,
        rule_hold_s=RULE_HOLD_S,
        escalate_after_s=ESCALATE_AFTER_S,
    )


def seed(db_path: Path, now: float) -> None:
    """The patient, with the doctor and the caregiver linked to it as if they had joined by invitation."""
    db = open_database(db_path)
    try:
        patients.add_patient(db, PATIENT_ID, PATIENT_NAME, now)
        for person in (DOCTOR, CAREGIVER):
            invitation = people.create_invitation(db, person.role, PATIENT_ID, ADMIN.telegram_id, now, 3600)
            people.redeem_invitation(db, invitation.code, person.telegram_id, person.name, person.telegram_id, now)
    finally:
        db.close()
