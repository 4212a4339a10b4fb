"""The MQTT side of the monitor: subscribe, hand each message on, reconnect after outages.

QoS 1 with a persistent session under a fixed client id, so the broker keeps what is published while the
monitor is away and delivers it on return. Each message is only timestamped and handed on to a queue.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn, cast

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from monitor.mqtt import Backoff

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600  # MQTT v5: how long the broker keeps our session while we are away


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    received_at: float


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
    """Keeps one subscription alive and passes every message to `on_message`."""

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
        self.subscribed = asyncio.Event()  # set while the subscription is live

    async def run(self) -> NoReturn:
        queue_type = _handing_on(self._hand_on)
        backoff = Backoff()
        while True:
            try:
                async with aiomqtt.Client(**self._options, queue_type=queue_type) as client:
                    await client.subscribe(self._filter, qos=1)
                    log.info("subscribed to %s", self._filter)
                    self.subscribed.set()
                    backoff.reset()
                    async for _ in client.messages:  # ends with MqttError when the connection drops
                        pass
            except aiomqtt.MqttError as error:
                self.subscribed.clear()
                delay = backoff.next_delay()
                log.warning("MQTT connection lost (%s); reconnecting in %.1f s", error, delay)
                await asyncio.sleep(delay)

    def _hand_on(self, message: aiomqtt.Message) -> None:
        self._on_message(Message(message.topic.value, cast(bytes, message.payload), self._clock()))


def _handing_on(hand_on: Callable[[aiomqtt.Message], None]) -> type[asyncio.Queue[aiomqtt.Message]]:
    """A queue class for aiomqtt that hands each message on the moment it arrives instead of holding it.

    The client acknowledges a QoS 1 message as soon as it has queued it, and drops its queue when the
    connection drops; handing on at once means no acknowledged message is left behind in the client.
    """

    class HandingOn(asyncio.Queue[aiomqtt.Message]):
        def put_nowait(self, item: aiomqtt.Message) -> None:
            hand_on(item)

    return HandingOn
