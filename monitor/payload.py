"""The MQTT vitals payload: validation from raw bytes to a `VitalSample`, or a rejection with its reason.

Topic `{prefix}/patients/{patient_id}/vitals`, payload a JSON object such as
`{"ts": "2026-01-02T10:00:00Z", "hr": 72, "spo2": 97, "sbp": 128, "dbp": 80, "rr": 15, "temp": 36.9,
"gcs": 15, "o2": false, "acvpu": "A", "device": "monitor-2"}`; every field is optional but at least one vital
must be present.

Time: `ts` orders the samples of one device. A stamp further ahead of the arrival time than the clock
tolerance cannot be a measurement (it has not happened yet): the device's clock is wrong, so the sample is
kept with its arrival time as `ts` (the device's stamp in `device_ts`) and judged as it arrives. A stamp older
than the retention window, or absurdly far ahead, is rejected.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.vitals import VITAL_FIELDS, VITALS, VitalSample

MAX_AHEAD_S = 86400.0  # a stamp this far ahead is no drifting clock but a broken one: rejected
DEVICE_ID = r"^[A-Za-z0-9._:-]{1,64}$"


@dataclass(frozen=True, slots=True)
class Admission:
    """What a message must meet to be stored, and when a device's clock is not believed."""

    max_bytes: int = 4096
    clock_tolerance_s: float = 30.0  # a stamp further ahead of arrival than this: the device clock is wrong
    max_age_s: float = 30 * 86400.0  # a stamp older than this (the retention window) is rejected


class RejectedPayload(ValueError):
    """A message that cannot be stored; `reason` is a short category for counting, the message the detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def _possible(vital: str) -> Any:
    """An optional reading, refused outside the range a living patient can show (a device fault)."""
    return Field(None, ge=VITALS[vital].lowest, le=VITALS[vital].highest)


class VitalsPayload(BaseModel):
    """The JSON schema; the ranges are those of `core.vitals.VITALS`."""

    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False, frozen=True)

    ts: datetime | float | None = None  # ISO 8601 or epoch seconds; missing: arrival time
    hr: float | None = _possible("hr")
    spo2: float | None = _possible("spo2")
    sbp: float | None = _possible("sbp")
    dbp: float | None = _possible("dbp")
    rr: float | None = _possible("rr")
    temp: float | None = _possible("temp")
    gcs: int | None = _possible("gcs")
    o2: bool | None = None
    acvpu: Literal["A", "C", "V", "P", "U"] | None = None
    device: Annotated[str, Field(pattern=DEVICE_ID)] | None = None  # which of the patient's devices

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if all(getattr(self, name) is None for name in VITAL_FIELDS):
            raise ValueError("no vitals in the message")
        if self.sbp is not None and self.dbp is not None and self.dbp >= self.sbp:
            raise ValueError(f"diastolic {self.dbp:g} is not below systolic {self.sbp:g}")
        return self


def _unique_keys(pairs: list[tuple[str, Any]]) -> None:
    """Refuse an object with a key twice (`{"hr": 80, "hr": 25}`): which value the device meant is unknown."""
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise RejectedPayload("duplicate key", f"{key}: appears more than once")
        seen.add(key)


def parse_vitals(patient_id: str, payload: bytes, received_at: float, admission: Admission) -> VitalSample:
    """Validate one message; raises RejectedPayload."""
    if len(payload) > admission.max_bytes:
        raise RejectedPayload("oversized", f"{len(payload)} bytes, more than {admission.max_bytes}")
    try:
        vitals = VitalsPayload.model_validate_json(payload)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        reason = "malformed" if first["type"] in ("json_invalid", "model_type") else "invalid"
        where = ".".join(str(part) for part in first["loc"])
        raise RejectedPayload(reason, f"{where + ': ' if where else ''}{first['msg']}") from None
    json.loads(payload, object_pairs_hook=_unique_keys)  # valid JSON by now; the schema reader keeps a key's last value
    match vitals.ts:
        case None:
            ts = received_at
        case datetime() as moment:
            if moment.tzinfo is None:
                raise RejectedPayload("invalid", "ts: an ISO 8601 time needs its UTC offset (e.g. Z)")
            ts = moment.timestamp()
        case seconds:
            ts = float(seconds)
    if ts > received_at + MAX_AHEAD_S:
        raise RejectedPayload("invalid", f"ts: {ts:.0f} is more than a day in the future")
    if ts < received_at - admission.max_age_s:
        days = admission.max_age_s / 86400
        raise RejectedPayload("too old", f"ts: {ts:.0f} is older than the retention window ({days:g} days)")
    device_ts = None
    if ts - received_at > admission.clock_tolerance_s:  # not measured yet: the device's clock runs ahead
        device_ts, ts = ts, received_at
    return VitalSample(
        patient_id=patient_id, ts=ts, received_at=received_at, hr=vitals.hr, spo2=vitals.spo2, sbp=vitals.sbp,
        dbp=vitals.dbp, rr=vitals.rr, temp=vitals.temp, gcs=vitals.gcs, o2=vitals.o2, acvpu=vitals.acvpu,
        device=vitals.device or "", device_ts=device_ts,
    )
