"""The contract the monitor's MQTT subscriber relies on, against a real mosquitto: aiomqtt hands its paho client
over (`Client._client`, a private attribute) with manual acknowledgement, and messages go through a queue class
of our own. A QoS 1 message left unacknowledged is sent again after a reconnect; one acknowledged is not.
pyproject.toml pins aiomqtt and paho-mqtt to the minor versions this holds for."""

from __future__ import annotations

import asyncio

import aiomqtt
import pytest

from monitor.ingest import Message, VitalsSubscriber, session_options
from monitor.mqtt import client_options, vitals_topic
from testsupport.broker import Mosquitto
from testsupport.waiting import eventually

PREFIX = "hemowatch"


async def _publish(port: int, *patients: str) -> None:
    async with aiomqtt.Client("127.0.0.1", port) as client:
        for patient_id in patients:
            await client.publish(vitals_topic(PREFIX, patient_id), patient_id.encode(), qos=1)


class Session:
    """One connection of a subscriber under the contract test's client id, collecting what it is handed."""

    def __init__(self, mosquitto: Mosquitto, shared: bool) -> None:
        topic_filter = vitals_topic(PREFIX, "+")
        options = client_options(mosquitto.url) | session_options("contract-test", shared)
        self.received: list[Message] = []
        self.subscriber = VitalsSubscriber(
            options, f"$share/ward/{topic_filter}" if shared else topic_filter, self.received.append, lambda: 0.0
        )
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Session:
        self._task = asyncio.create_task(self.subscriber.run())
        await asyncio.wait_for(self.subscriber.subscribed.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self._task

    def payloads(self) -> list[bytes]:
        return [message.payload for message in self.received]


@pytest.mark.parametrize("shared", [False, True], ids=["plain", "shared"])
async def test_an_unacknowledged_message_is_sent_again_after_a_reconnect_and_an_acknowledged_one_is_not(
    mosquitto: Mosquitto, shared: bool
) -> None:
    async with Session(mosquitto, shared) as first:
        await _publish(mosquitto.port, "acknowledged", "left")
        await eventually(lambda: first.payloads() == [b"acknowledged", b"left"], 10, "both messages")
        assert [message.qos for message in first.received] == [1, 1]
        first.subscriber.acknowledge(first.received[:1])

    async with Session(mosquitto, shared) as second:
        await _publish(mosquitto.port, "marker")  # comes after whatever the session still holds
        await eventually(lambda: b"marker" in second.payloads(), 10, "the marker")
        assert second.payloads() == [b"left", b"marker"]
