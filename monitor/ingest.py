"""The MQTT side of the monitor: subscribe, hand each message on, acknowledge it once stored, reconnect.

QoS 1 with a persistent session under a fixed client id, so the broker keeps what is published while the
monitor is away and delivers it on return. Each message is only timestamped and handed on to a queue; the
broker gets its acknowledgement (PUBACK) only after the store has committed or rejected it. Until then the
message stays in the broker's session, so a monitor killed at any moment is sent it again on return.

A broker keeps only so many messages for an absent client (mosquitto: `max_queued_messages`, 1,000 by default)
and drops the rest without telling anyone. mosquitto counts them in `$SYS/broker/publish/messages/dropped`,
which the subscriber follows (`BrokerDrops`) and reports at WARNING when it starts and whenever it grows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NoReturn, cast

import aiomqtt
from paho.mqtt import client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from core.backoff import Backoff

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600  # MQTT v5: how long the broker keeps our session while we are away
DROPPED_TOPIC = "$SYS/broker/publish/messages/dropped"  # mosquitto: messages dropped at queue or in-flight limits
SHORT_CONNECTION_S = 5.0  # a subscribed connection lost sooner than this counts towards a session taken over
SHORT_CONNECTIONS = 5  # that many in a row: another client is using our client id


class BrokerDrops:
    """Follows mosquitto's count of dropped messages and says, at WARNING, when messages were dropped."""

    def __init__(self) -> None:
        self.count: int | None = None  # as last reported by the broker; None until it says

    def update(self, payload: bytes) -> None:
        try:
            count = int(payload)
        except ValueError:
            return
        if self.count is None and count > 0:
            log.warning(
                "the MQTT broker has dropped %d messages since it started (its max_queued_messages or in-flight "
                "limits): vitals published while this monitor was away may be lost. Set max_queued_messages 0 in "
                "mosquitto.conf (see deploy/mosquitto.conf)", count,
            )
        elif self.count is not None and count > self.count:
            log.warning(
                "the MQTT broker dropped %d more messages (%d since it started): a queue or in-flight limit is "
                "reached. Set max_queued_messages 0 in mosquitto.conf (see deploy/mosquitto.conf)",
                count - self.count, count,
            )
        self.count = count


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    received_at: float
    mid: int  # the broker's message id, unique only within one connection
    qos: int
    connection: int  # which connection of the subscriber brought it


def session_options(client_id: str, shared: bool) -> dict[str, Any]:
    """Persistent-session options: MQTT 3.1.1 (clean_session off), or v5 (clean_start off, long expiry) when
    the subscription is shared, since `$share/...` is a v5 feature."""
    if not shared:
        return {"identifier": client_id, "clean_session": False}
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = SESSION_EXPIRY_S
    return {
        "identifier": client_id, "protocol": aiomqtt.ProtocolVersion.V5, "clean_start": False,
        "properties": properties,
    }


class VitalsSubscriber:
    """Keeps one subscription alive, passes every message to `on_message` and acknowledges it on request."""

    def __init__(
        self,
        client_options: dict[str, Any],
        topic_filter: str,
        on_message: Callable[[Message], None],
        clock: Callable[[], float],
    ) -> None:
        self._options = client_options
        self._filter = topic_filter
        self._on_message = on_message
        self._clock = clock
        self._client: mqtt.Client | None = None  # the connection's paho client, while connected
        self._connection = 0
        self._taking = True
        self._queue_type = _handing_on(self._hand_on)
        self.subscribed = asyncio.Event()  # set while the subscription is live
        self.broker_drops = BrokerDrops()
        self._subscribed_at: float | None = None  # time.monotonic() of the live connection's subscription
        self._short_connections = 0

    async def run(self) -> NoReturn:
        self._taking = True
        backoff = Backoff()
        while True:
            try:
                await self._receive(backoff)
            except aiomqtt.MqttError as error:
                self.subscribed.clear()
                self._session_taken_over()
                delay = backoff.next_delay()
                log.warning("MQTT connection lost (%s); reconnecting in %.1f s", error, delay)
                await asyncio.sleep(delay)

    def _session_taken_over(self) -> None:
        """Say plainly when another client uses our client id: the broker then ends whichever connection is
        older, so two monitors with one `MQTT_CLIENT_ID` take the session (and its queued messages) from each
        other in turn. The sign (aiomqtt does not pass on an MQTT v5 reason code) is a connection lost again
        and again within seconds of subscribing, which a broker restart now and then does not produce."""
        subscribed_at, self._subscribed_at = self._subscribed_at, None
        if subscribed_at is None:
            return
        if time.monotonic() - subscribed_at >= SHORT_CONNECTION_S:
            self._short_connections = 0
            return
        self._short_connections += 1
        if self._short_connections % SHORT_CONNECTIONS == 0:
            log.error(
                "the MQTT broker ended this monitor's connection %d times in a row within %.0f s of subscribing: "
                "another client is probably connected with the same client id %r. Two monitors with one "
                "MQTT_CLIENT_ID take the session and its queued vitals from each other in turn; give each its own "
                "MQTT_CLIENT_ID (and, to share the load, the same MQTT_SHARED_GROUP)",
                self._short_connections, SHORT_CONNECTION_S, self._options.get("identifier"),
            )

    async def _receive(self, backoff: Backoff) -> None:
        """One connection: subscribe, then receive until it drops (with MqttError)."""
        client = aiomqtt.Client(**self._options, queue_type=self._queue_type)
        # aiomqtt has no manual acknowledgement; its paho client does. Private, so aiomqtt is pinned to a minor
        # version that tests/test_monitor_mqtt_contract.py holds for.
        paho = client._client  # noqa: SLF001
        paho.manual_ack_set(True)
        self._connection += 1
        self._client = paho
        try:
            async with client:
                await client.subscribe(self._filter, qos=1)
                await client.subscribe(DROPPED_TOPIC, qos=0)  # retained: answered at once by mosquitto
                log.info("subscribed to %s", self._filter)
                self._subscribed_at = time.monotonic()
                self.subscribed.set()
                backoff.reset()
                async for _ in client.messages:
                    pass
        finally:
            self._client = None

    def acknowledge(self, messages: Iterable[Message]) -> None:
        """Tell the broker these messages are dealt with. Call on the event loop, which drives the paho client.

        Message ids belong to the connection that brought them: messages from an earlier connection are not
        acknowledged on this one, and the broker sends them again from the session (they are then skipped as
        already stored).
        """
        client, connection = self._client, self._connection
        if client is None:
            return
        for message in messages:
            if message.qos and message.connection == connection:
                client.ack(message.mid, message.qos)

    def stop_taking(self) -> None:
        """Leave further messages unacknowledged in the broker's session, for the next start to receive."""
        self._taking = False

    def _hand_on(self, message: aiomqtt.Message) -> None:
        if message.topic.value == DROPPED_TOPIC:
            self.broker_drops.update(cast(bytes, message.payload))
        elif self._taking:
            payload = cast(bytes, message.payload)
            self._on_message(
                Message(message.topic.value, payload, self._clock(), message.mid, message.qos, self._connection)
            )


def _handing_on(hand_on: Callable[[aiomqtt.Message], None]) -> type[asyncio.Queue[aiomqtt.Message]]:
    """A queue class for aiomqtt that hands each message on the moment it arrives instead of holding it,
    so the client's network loop does no more per message than build it."""

    class HandingOn(asyncio.Queue[aiomqtt.Message]):
        def put_nowait(self, item: aiomqtt.Message) -> None:
            hand_on(item)

    return HandingOn
