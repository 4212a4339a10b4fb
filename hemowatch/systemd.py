"""Telling systemd how the service is doing (sd_notify), for a unit of `Type=notify` with a `WatchdogSec`.

Each message is one datagram on the unix socket systemd names in $NOTIFY_SOCKET (an abstract one when the name
starts with '@'); without it, as anywhere but under such a unit, nothing is sent. The protocol is these few
lines, so no package is needed for it (the `sdnotify` package has not changed since 2017).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

log = logging.getLogger(__name__)


def notify(message: str) -> None:
    """Send `message` ("READY=1", "WATCHDOG=1", "STOPPING=1") to systemd, if it listens."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(message.encode(), address)
    except OSError as error:
        log.warning("could not tell systemd %s (%s at NOTIFY_SOCKET)", message, error)


def watchdog_interval_s() -> float | None:
    """How often to ping the watchdog: half its timeout, as systemd advises; None when this process has none.
    systemd sets WATCHDOG_USEC (and WATCHDOG_PID, the process it watches) from the unit's WatchdogSec."""
    usec, pid = os.environ.get("WATCHDOG_USEC", ""), os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6


@asynccontextmanager
async def watchdog() -> AsyncIterator[None]:
    """Ping systemd's watchdog while the block runs. The pings come from a task on the event loop, so a loop that
    is stuck (a call that never returns, a deadlock) stops them, and systemd restarts the service."""
    interval_s = watchdog_interval_s()
    if interval_s is None:
        yield
        return
    pinging = asyncio.create_task(_ping(interval_s), name="systemd-watchdog")
    try:
        yield
    finally:
        pinging.cancel()
        with suppress(asyncio.CancelledError):
            await pinging


async def _ping(interval_s: float) -> None:
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval_s)
