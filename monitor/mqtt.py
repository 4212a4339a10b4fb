"""Broker connection details shared by the monitor, the simulator and the benchmark."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

_DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


def client_options(url: str, ca_file: Path | None = None) -> dict[str, Any]:
    """`aiomqtt.Client` keyword arguments for `mqtt://[user:pass@]host[:port]` or `mqtts://...` (TLS,
    verified against `ca_file` when given, else the system's CAs)."""
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        # The URL is not repeated: it may carry the broker password.
        raise ValueError("the MQTT URL should look like mqtt://host:1883 or mqtts://user:pass@host:8883")
    options: dict[str, Any] = {"hostname": parts.hostname, "port": parts.port or _DEFAULT_PORTS[parts.scheme]}
    if parts.username:
        options["username"] = unquote(parts.username)
        options["password"] = unquote(parts.password) if parts.password else None
    if parts.scheme == "mqtts":
        options["tls_context"] = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    return options


def vitals_topic(prefix: str, patient_id: str) -> str:
    return f"{prefix}/patients/{patient_id}/vitals"


def patient_from_topic(prefix: str, topic: str) -> str | None:
    """The patient id in a vitals topic, or None when the topic is not one."""
    head, tail = f"{prefix}/patients/", "/vitals"
    if not (topic.startswith(head) and topic.endswith(tail)):
        return None
    patient_id = topic[len(head) : -len(tail)]
    return patient_id if patient_id and "/" not in patient_id else None


def broker_url(mqtt_url: str, embedded_host: str, embedded_port: int) -> str:
    """The configured broker, or the embedded one's address when none is configured."""
    return mqtt_url or f"mqtt://{embedded_host}:{embedded_port}"

