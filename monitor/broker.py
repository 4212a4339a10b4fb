"""An MQTT broker inside the service process (amqtt), so one machine works without installing one.

For production point `MQTT_URL` at mosquitto or a cluster instead: the embedded broker keeps sessions in
memory only, so messages queued for an absent client do not survive a restart of the service.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Self

from amqtt.broker import Broker
from amqtt.errors import BrokerError

from core.ports import PortTaken, is_taken


class _StartupFailure(logging.Filter):
    """Keeps amqtt's own traceback of a failed start out of the log: the caller reports it in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "Broker startup failed"

log = logging.getLogger(__name__)


class EmbeddedBroker:
    """`async with EmbeddedBroker(host, port) as broker:` serves MQTT 3.1.1 at `broker.url` meanwhile."""

    def __init__(self, host: str = "127.0.0.1", port: int = 1883) -> None:
        self.host = host
        self.port = port
        self._broker: Broker | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    async def __aenter__(self) -> Self:
        self._broker = Broker(  # needs the running loop, so it is made here
            {
                "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
                "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
            }
        )
        quiet = _StartupFailure()
        logging.getLogger("amqtt.broker").addFilter(quiet)
        try:
            await self._broker.start()
        except BrokerError as error:
            if is_taken(error.__cause__ or error.__context__):
                raise PortTaken(
                    f"Port {self.port} on {self.host} is already taken, so the embedded MQTT broker cannot start; "
                    f"a broker is probably running there already (Debian's mosquitto starts one on 1883). Use it: "
                    f"MQTT_URL=mqtt://127.0.0.1:{self.port} (or set EMBEDDED_BROKER_PORT to a free port)."
                ) from None
            raise
        finally:
            logging.getLogger("amqtt.broker").removeFilter(quiet)
        log.warning(
            "the embedded MQTT broker keeps sessions, and the vitals queued for a monitor that is away, in this "
            "process's memory only: they are lost whenever the service stops. In production set MQTT_URL to a "
            "mosquitto configured like deploy/mosquitto.conf"
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._broker is not None:
            await self._broker.shutdown()
            self._broker = None
