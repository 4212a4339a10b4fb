"""The deployment examples say what the service accepts: the two-instance example's settings load as HemoWatch
reads them, share one database, broker and client id, and give each instance on one host ports of its own."""

from __future__ import annotations

from pathlib import Path

from core.settings import Settings

TWO_INSTANCES = Path(__file__).resolve().parents[1] / "deploy" / "two-instances"


def test_the_two_instance_example_shares_database_broker_and_session_with_ports_of_its_own() -> None:
    instances = [
        Settings(_env_file=(TWO_INSTANCES / "common.env", TWO_INSTANCES / f"{name}.env"),
                 telegram_bot_token="123:token")
        for name in ("a", "b")
    ]
    assert {str(settings.database) for settings in instances} == {
        "postgresql://hemowatch:change-me@127.0.0.1:5432/hemowatch"}
    assert {(settings.mqtt_url, settings.mqtt_client_id) for settings in instances} == {
        ("mqtt://hemowatch-monitor:change-me@127.0.0.1:1883", "hemowatch-monitor")}
    assert len({settings.dicom_port for settings in instances}) == 2
    assert len({settings.metrics_port for settings in instances}) == 2
    unit = (TWO_INSTANCES / "hemowatch@.service").read_text()
    assert "EnvironmentFile=/etc/hemowatch/common.env" in unit and "EnvironmentFile=/etc/hemowatch/%i.env" in unit
    assert "Restart=always" in unit and "WatchdogSec=" in unit
