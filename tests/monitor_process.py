"""A monitor in a process of its own, for tests that kill it. Prints "subscribed" once the subscription is live.

    python tests/monitor_process.py DATABASE MQTT_URL

DATABASE is the path of a SQLite file or a postgresql:// URL.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from core.settings import Settings
from monitor.vitals_monitor import VitalsMonitor
from stores import store_settings
from testsupport.doubles import RecordingNotifier


async def main(database: str, mqtt_url: str) -> None:
    settings = Settings(_env_file=None, mqtt_url=mqtt_url, **store_settings(database, Path.cwd()))
    async with VitalsMonitor(settings, RecordingNotifier()) as monitor:
        await monitor.subscriber.subscribed.wait()
        print("subscribed", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
