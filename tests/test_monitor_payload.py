"""Payload validation: what a device may send, and every kind of message that is rejected with a reason."""

from __future__ import annotations

import pytest

from core.vitals import VitalSample
from monitor.mqtt import client_options, patient_from_topic
from monitor.payload import Admission, RejectedPayload, parse_vitals

NOW = 1_800_000_000.0


def _parse(payload: bytes, max_bytes: int = 4096) -> VitalSample:
    return parse_vitals("p1", payload, NOW, Admission(max_bytes=max_bytes, clock_tolerance_s=30, max_age_s=86400))


def test_full_payload_with_iso_time() -> None:
    sample = _parse(
        b'{"ts": "2027-01-15T08:00:00+01:00", "hr": 72, "spo2": 97.5, "sbp": 128, "dbp": 80, "rr": 15,'
        b' "temp": 36.9, "gcs": 15, "o2": false, "acvpu": "A", "device": "monitor-2", "firmware": "ignored"}'
    )
    assert sample.ts == NOW - 3600  # NOW is 2027-01-15T08:00:00Z
    assert (sample.hr, sample.spo2, sample.gcs, sample.o2, sample.acvpu) == (72, 97.5, 15, False, "A")
    assert (sample.device, sample.device_ts) == ("monitor-2", None)


def test_a_stamp_ahead_of_the_clock_tolerance_is_replaced_by_the_arrival_time() -> None:
    within = _parse(b'{"ts": 1800000029, "hr": 70}')
    assert (within.ts, within.device_ts) == (NOW + 29, None)
    ahead = _parse(b'{"ts": 1800000290, "hr": 70, "device": "pump"}')
    assert (ahead.ts, ahead.device_ts, ahead.stamp, ahead.device) == (NOW, NOW + 290, NOW + 290, "pump")


def test_epoch_time_or_arrival_time() -> None:
    assert _parse(b'{"ts": 1799999990.5, "hr": 70}').ts == 1799999990.5
    missing = _parse(b'{"spo2": 96}')
    assert missing.ts == missing.received_at == NOW


@pytest.mark.parametrize(
    ("payload", "reason", "detail"),
    [
        (b"not json at all", "malformed", "Invalid JSON"),
        (b"[72, 97]", "malformed", "object"),
        (b'"hr=72"', "malformed", "object"),
        (b"\xff\xfe\x00", "malformed", "Invalid JSON"),
        (b'{"hr": "72"}', "invalid", "hr"),
        (b'{"hr": NaN}', "invalid", "finite"),
        (b'{"temp": Infinity}', "invalid", "finite"),
        (b'{"hr": 1e400}', "invalid", "finite"),
        (b'{"hr": 400}', "invalid", "hr"),
        (b'{"spo2": 101}', "invalid", "spo2"),
        (b'{"temp": 50}', "invalid", "temp"),
        (b'{"gcs": 2}', "invalid", "gcs"),
        (b'{"gcs": 14.5}', "invalid", "gcs"),
        (b'{"o2": "yes"}', "invalid", "o2"),
        (b'{"acvpu": "X"}', "invalid", "acvpu"),
        (b'{"sbp": 80, "dbp": 95}', "invalid", "diastolic"),
        (b'{"ts": "2027-01-15T08:00:00", "hr": 70}', "invalid", "UTC offset"),
        (b'{"ts": 1800086401, "hr": 70}', "invalid", "more than a day in the future"),
        (b'{"ts": 1e300, "hr": 70}', "invalid", "future"),
        (b'{"ts": 1799913599, "hr": 70}', "too old", "older than the retention window"),
        (b'{"ts": -5, "hr": 70}', "too old", "retention"),
        (b'{"ts": "0001-01-01T00:00:00Z", "hr": 70}', "too old", "retention"),
        (b'{"ts": 1e400, "hr": 70}', "invalid", "ts"),
        (b'{"hr": 70, "device": "a/b"}', "invalid", "device"),
        (b'{"hr": 70, "device": ""}', "invalid", "device"),
        (b'{"hr": 70, "device": 7}', "invalid", "device"),
        (b'{"ts": 1799999990}', "invalid", "no vitals"),
        (b"{}", "invalid", "no vitals"),
        (b'{"hr": 80, "hr": 25}', "duplicate key", "hr: appears more than once"),
        (b'{"hr": 80, "spo2": 97, "device": "a", "device": "b"}', "duplicate key", "device"),
        (b'{"hr": 80, "meta": {"fw": 1, "fw": 2}}', "duplicate key", "fw"),
    ],
)
def test_rejected_with_a_reason(payload: bytes, reason: str, detail: str) -> None:
    with pytest.raises(RejectedPayload, match=detail) as rejected:
        _parse(payload)
    assert rejected.value.reason == reason


def test_oversized_payload_is_rejected_before_parsing() -> None:
    with pytest.raises(RejectedPayload, match="5000 bytes") as rejected:
        _parse(b"{" + b" " * 4998 + b"}", max_bytes=4096)
    assert rejected.value.reason == "oversized"


def test_vitals_topics() -> None:
    assert patient_from_topic("hemowatch", "hemowatch/patients/bed-7/vitals") == "bed-7"
    assert patient_from_topic("hemowatch", "hemowatch/patients/a/b/vitals") is None
    assert patient_from_topic("hemowatch", "hemowatch/patients//vitals") is None
    assert patient_from_topic("hemowatch", "other/patients/bed-7/vitals") is None


def test_broker_urls() -> None:
    assert client_options("mqtt://broker.local") == {"hostname": "broker.local", "port": 1883}
    secure = client_options("mqtts://mon%40ward:s3cret@broker.example:8884")
    assert (secure["hostname"], secure["port"], secure["username"], secure["password"]) == (
        "broker.example", 8884, "mon@ward", "s3cret"
    )
    assert secure["tls_context"].verify_mode.name == "CERT_REQUIRED"
    with pytest.raises(ValueError, match="mqtt://host"):
        client_options("http://broker")
    with pytest.raises(ValueError) as wrong_scheme:
        client_options("tcp://mon:s3cret@broker")
    assert "s3cret" not in str(wrong_scheme.value)
