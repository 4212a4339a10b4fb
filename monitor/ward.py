"""The monitor's synchronous core shell: every watched patient's engine state, and the store writes.

Runs on the store thread only (one SQLite connection, one thread), so it needs no locks. A batch of messages
becomes one transaction: samples, alerts and their outbox rows land together or not at all, and the
in-memory state moves on only after the commit, so a failed batch can simply be retried.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import sqlite_utils

from core.vitals import Threshold, VitalSample
from monitor.engine import AlertRaised, EngineConfig, Event, PatientState, Profile, assess, check_stale, seeded_state
from monitor.ingest import Message
from monitor.mqtt import patient_from_topic
from monitor.payload import Admission, RejectedPayload, parse_vitals
from monitor.rejection_log import RejectionLog
from monitor.rules import patient_rules
from store.alerts import find_open_alert, open_alerts, raise_alert, resolve_alert
from store.patients import (
    Patient,
    get_patient,
    get_thresholds,
    list_patients,
    patients_version,
    thresholds_by_patient,
)
from store.schema import atomic
from store.vitals import ReadingKey, insert_vitals, reading_key, stored_samples

log = logging.getLogger(__name__)


@dataclass
class IngestStats:
    """Running counts since start; `rejected` is keyed by reason ("invalid", "unknown patient", ...)."""

    received: int = 0  # messages taken from the broker, those it delivers again included
    oldest_unstored_at: float | None = None  # when the oldest message received and not yet stored arrived
    stored: int = 0
    duplicates: int = 0  # readings delivered again and skipped
    rejected: Counter[str] = field(default_factory=Counter)
    alerts_raised: int = 0
    alerts_resolved: int = 0
    store_failing_since: float | None = None  # when the batch being retried first failed; None while storing works
    store_failures: int = 0  # failed attempts to store a batch (each one retried)
    store_outages: int = 0  # times storing started to fail


class Ward:
    def __init__(
        self,
        db: sqlite_utils.Database,
        config: EngineConfig,
        topic_prefix: str,
        admission: Admission,
        shared: bool = False,
        reopen_within_s: float = 0.0,
    ) -> None:
        """`shared`: this process receives only some patients (a shared subscription), so it judges the
        silence only of patients it has heard from, leaving the others to the process that gets them.
        `reopen_within_s`: a condition returning this soon after its alert resolved re-opens that alert."""
        self._db = db
        self._shared = shared
        self._config = config
        self._prefix = topic_prefix
        self._admission = admission
        self._reopen_within_s = reopen_within_s
        self._wrong_clocks: set[tuple[str, str]] = set()  # (patient, device) already reported
        self._patients: dict[str, Patient] = {}
        self._overrides: dict[str, dict[str, Threshold]] = {}
        self._version: tuple[object, ...] = ()
        self._profiles: dict[str, Profile] = {}
        self._states: dict[str, PatientState] = {}
        self.stats = IngestStats()
        self._rejection_log = RejectionLog()

    def refresh(self, now: float) -> None:
        """Pick up patients and thresholds changed by others; a new patient starts with its open alerts.
        Runs every few seconds, so only what changed is rebuilt."""
        version, overrides = patients_version(self._db), thresholds_by_patient(self._db)
        if version == self._version and overrides == self._overrides:
            return
        patients = {patient.id: patient for patient in list_patients(self._db)}
        changed = [
            patient_id for patient_id, patient in patients.items()
            if self._patients.get(patient_id) != patient or self._overrides.get(patient_id) != overrides.get(patient_id)
        ]
        raised: dict[str, set[str]] = {}
        if any(patient_id not in self._states for patient_id in changed):
            for alert in open_alerts(self._db):
                raised.setdefault(alert.patient_id, set()).add(alert.condition)
        for patient_id in self._patients.keys() - patients.keys():
            del self._profiles[patient_id], self._states[patient_id]
        for patient_id in changed:
            self._profiles[patient_id] = Profile(patient_rules(overrides.get(patient_id, {})), patients[patient_id].neuro)
            if patient_id not in self._states:
                self._states[patient_id] = seeded_state(now, raised.get(patient_id, set()))
        self._patients, self._overrides, self._version = patients, overrides, version

    def ingest(self, messages: Iterable[Message]) -> bool:
        """Validate, judge and store a batch; returns whether any notice was queued.

        A sample whose reading (patient, device, the device's stamp and every value) is already stored, or
        earlier in the batch, is the same message delivered again (a broker resend, a device retry): it is
        skipped before judging, so the engine sees each stored sample once and nothing else. Different readings
        of the same second, from one device or two, are all stored and judged. The look-up runs before the write transaction, so the
        lock is held only for the writes; if two processes under a shared subscription both got the same
        sample, each judges it, and the store still keeps one row.
        """
        fresh: dict[ReadingKey, VitalSample] = {}
        rejected: list[tuple[Message, RejectedPayload]] = []
        valid = 0
        for message in messages:
            try:
                sample = self._parse(message)
            except RejectedPayload as rejection:
                rejected.append((message, rejection))
                continue
            valid += 1
            if sample.device_ts is not None:
                self._wrong_clock(sample)
            fresh.setdefault(reading_key(sample), sample)
        for key in stored_samples(self._db, fresh.keys()):
            del fresh[key]
        samples: list[VitalSample] = []
        changes: list[tuple[str, Event, float]] = []
        states: dict[str, PatientState] = {}
        for sample in fresh.values():
            state = states.get(sample.patient_id) or self._states[sample.patient_id]
            state, events, news2 = assess(state, sample, self._profiles[sample.patient_id], self._config)
            states[sample.patient_id] = state
            if news2 is not None:
                sample.news2, sample.news2_components = news2.total, news2.components
            samples.append(sample)
            changes.extend((sample.patient_id, event, sample.received_at) for event in events)
        with atomic(self._db):
            insert_vitals(self._db, samples)
            self._apply(changes)
        self._states.update(states)
        if duplicates := valid - len(samples):
            log.info("skipped %d samples already stored (delivered again)", duplicates)
        self.stats.stored += len(samples)
        self.stats.duplicates += duplicates
        self.stats.rejected.update(rejection.reason for _, rejection in rejected)
        for message, rejection in rejected:  # once the batch is stored: a batch retried is not counted twice
            self._rejection_log.note(message, rejection)
        return bool(changes)

    def check_stale(self, now: float) -> bool:
        """Raise "sensor offline" for monitored patients gone quiet; returns whether any was raised. Also writes
        the counts of rejected messages due in the log, which a flood that stops leaves behind."""
        self._rejection_log.write_due(now)
        changes: list[tuple[str, Event, float]] = []
        states: dict[str, PatientState] = {}
        for patient_id, state in self._states.items():
            if self._patients[patient_id].monitored and not (self._shared and state.last_ts is None):
                states[patient_id], events = check_stale(state, now, self._config)
                changes.extend((patient_id, event, now) for event in events)
        with atomic(self._db):
            self._apply(changes)
        self._states.update(states)
        return bool(changes)

    def _wrong_clock(self, sample: VitalSample) -> None:
        """Say once per device that its clock runs ahead, and by how much."""
        if (sample.patient_id, sample.device) in self._wrong_clocks:
            return
        self._wrong_clocks.add((sample.patient_id, sample.device))
        log.warning(
            "device %r of patient %s stamps its samples %.0f s ahead of this machine's clock; they are judged "
            "on arrival time until its clock is set right (said once per device)",
            sample.device or "(no device id)", sample.patient_id, sample.stamp - sample.received_at,
        )

    def _parse(self, message: Message) -> VitalSample:
        patient_id = patient_from_topic(self._prefix, message.topic)
        if patient_id is None:
            raise RejectedPayload("bad topic", "not a vitals topic")
        if patient_id not in self._profiles and not self._admit(patient_id, message.received_at):
            raise RejectedPayload("unknown patient", f"no registered patient {patient_id!r}")
        return parse_vitals(patient_id, message.payload, message.received_at, self._admission)

    def _admit(self, patient_id: str, now: float) -> bool:
        """Start watching a patient registered since the last refresh."""
        patient = get_patient(self._db, patient_id)
        if patient is None:
            return False
        self._patients[patient_id] = patient
        overrides = get_thresholds(self._db, patient_id)
        if overrides:
            self._overrides[patient_id] = overrides
        self._profiles[patient_id] = Profile(patient_rules(overrides), patient.neuro)
        self._states[patient_id] = seeded_state(now, set())
        return True

    def _apply(self, changes: list[tuple[str, Event, float]]) -> None:
        for patient_id, event, now in changes:
            if isinstance(event, AlertRaised):
                news2 = event.news2
                raise_alert(
                    self._db, patient_id, event.condition, event.severity, event.title, now, event.values,
                    news2.total if news2 else None, news2.components if news2 else None, self._reopen_within_s,
                )
                self.stats.alerts_raised += 1
            elif (alert_id := find_open_alert(self._db, patient_id, event.condition)) is not None:
                resolve_alert(self._db, alert_id, now)
                self.stats.alerts_resolved += 1
