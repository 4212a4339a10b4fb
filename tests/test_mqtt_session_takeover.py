"""What a new leader inherits through the broker, against a real mosquitto: a client connecting under the client id
of a persistent session (clean_session off) takes that session over, the QoS 1 messages its predecessor left
unacknowledged (sent again, marked DUP) and those queued while nobody was connected alike, and a connected
predecessor is disconnected by the broker. A predecessor killed with SIGKILL is noticed by the broker at once,
not after its keepalive, because the kernel closes the killed process's socket; only a vanished machine or
network leaves the broker waiting for the keepalive (1.5 times it)."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import aiomqtt
from paho.mqtt import client as mqtt

from testsupport.broker import Mosquitto
from testsupport.waiting import eventually

CLIENT_ID = "hemowatch-leader"
TOPIC = "hemowatch/patients/p1/vitals"
WILL_TOPIC = "hemowatch/leader/gone"  # the broker publishes it when it finds the killed client's connection gone
KEEPALIVE_S = 60
# A subscriber in a process of its own that acknowledges nothing and prints each payload it is handed.
NEVER_ACKNOWLEDGING = f"""
import sys
from paho.mqtt import client as mqtt

client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id={CLIENT_ID!r}, clean_session=False)
client.manual_ack_set(True)
client.will_set({WILL_TOPIC!r}, b"gone", qos=1)
client.on_connect = lambda client, *_: client.subscribe({TOPIC!r}, qos=1)
client.on_subscribe = lambda *_: print("subscribed", flush=True)
client.on_message = lambda client, userdata, message: print(message.payload.decode(), flush=True)
client.connect("127.0.0.1", int(sys.argv[1]), keepalive={KEEPALIVE_S})
client.loop_forever()
"""


@dataclass
class Received:
    payload: bytes
    dup: bool
    at: float  # time.monotonic()


@dataclass
class Session:
    """What a client under a persistent session was told and handed."""

    received: list[Received] = field(default_factory=list)
    session_present: bool | None = None  # as the broker said on connecting
    subscribed: threading.Event = field(default_factory=threading.Event)
    disconnected_at: float | None = None

    def payloads(self) -> list[bytes]:
        return [message.payload for message in self.received]


@contextmanager
def _session(port: int, client_id: str, topic: str | None, *, acknowledge: bool = False) -> Iterator[Session]:
    """A paho client connected under `client_id` with a persistent session, which stays out once disconnected;
    subscribed to `topic` unless None (the session's subscription is kept). It acknowledges each message as it
    arrives, or none: the broker then sends no more than its in-flight limit (20)."""
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False, reconnect_on_failure=False
    )
    session = Session()
    client.manual_ack_set(True)

    def connected(client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags, *_: object) -> None:
        session.session_present = flags.session_present
        if topic is not None:
            client.subscribe(topic, qos=1)

    def disconnected(*_: object) -> None:
        session.disconnected_at = time.monotonic()

    def handed(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        session.received.append(Received(message.payload, message.dup, time.monotonic()))
        if acknowledge:
            client.ack(message.mid, message.qos)

    client.on_connect = connected
    client.on_subscribe = lambda *_: session.subscribed.set()
    client.on_message = handed
    client.on_disconnect = disconnected
    client.connect("127.0.0.1", port, keepalive=KEEPALIVE_S)
    client.loop_start()
    try:
        yield session
    finally:
        client.disconnect()
        client.loop_stop()


async def _publish(port: int, payloads: list[str]) -> None:
    """Each payload at QoS 1, once the broker has it (PUBACK)."""
    async with aiomqtt.Client("127.0.0.1", port) as publisher:
        for payload in payloads:
            await publisher.publish(TOPIC, payload, qos=1)


async def test_a_client_taking_over_a_killed_clients_session_gets_its_unacknowledged_and_queued_messages(
    mosquitto: Mosquitto,
) -> None:
    in_flight, queued = [str(n) for n in range(10)], [str(n) for n in range(10, 30)]
    with _session(mosquitto.port, "observer", WILL_TOPIC) as observer:
        await eventually(observer.subscribed.is_set, 5, "the observer to subscribe")
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", NEVER_ACKNOWLEDGING, str(mosquitto.port), stdout=asyncio.subprocess.PIPE
        )
        try:
            assert await asyncio.wait_for(child.stdout.readline(), 10) == b"subscribed\n"
            await _publish(mosquitto.port, in_flight)
            handed = [await asyncio.wait_for(child.stdout.readline(), 5) for _ in in_flight]
            assert handed == [f"{payload}\n".encode() for payload in in_flight]
            killed = time.monotonic()
            child.kill()  # SIGKILL, with every message unacknowledged
        finally:
            if child.returncode is None:
                child.kill()
            await child.wait()
        await eventually(lambda: observer.received, 5, "the broker to publish the killed client's will")
        assert observer.received[0].at - killed < 1.0  # at once: far from 1.5 keepalives (90 s)
    await _publish(mosquitto.port, queued)  # while nobody is connected under CLIENT_ID

    with _session(mosquitto.port, CLIENT_ID, None, acknowledge=True) as successor:  # subscribes to nothing itself
        await eventually(lambda: len(successor.received) == len(in_flight + queued), 5, "every message")
        await _publish(mosquitto.port, ["marker"])  # anything still to come arrives before it
        await eventually(lambda: successor.payloads()[-1:] == [b"marker"], 5, "the marker")
    assert successor.session_present
    assert [(m.payload.decode(), m.dup) for m in successor.received] == (
        [(payload, True) for payload in in_flight] + [(payload, False) for payload in [*queued, "marker"]]
    )


async def test_a_client_connecting_under_a_connected_clients_id_takes_its_session_and_ends_its_connection(
    mosquitto: Mosquitto,
) -> None:
    with _session(mosquitto.port, CLIENT_ID, TOPIC) as first:
        await eventually(first.subscribed.is_set, 5, "the first client to subscribe")
        with _session(mosquitto.port, CLIENT_ID, None) as second:
            await eventually(lambda: second.session_present is not None, 5, "the second client to connect")
            await eventually(lambda: first.disconnected_at is not None, 5, "the broker to end the first connection")
            assert second.session_present and second.disconnected_at is None
            await _publish(mosquitto.port, ["after"])
            await eventually(lambda: second.payloads() == [b"after"], 5, "the message, on the second client")
    assert first.payloads() == []
