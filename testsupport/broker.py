"""A real mosquitto broker on a free loopback port, for tests and benchmarks."""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Mosquitto:
    """A real mosquitto broker on a free loopback port; `restart()` simulates an outage."""

    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    # Broker settings after listener, persistence location and user; by default no limit on queued messages
    # (mosquitto's own default, without this line, is 1,000). $SYS is refreshed every second.
    settings: tuple[str, ...] = ("persistence true", "max_queued_messages 0", "sys_interval 1")

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        config = self.workdir / "mosquitto.conf"
        config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence_location {self.workdir}/\n"
            # Started as root, mosquitto would switch to its own user and could not save its persistence
            # file in our private temporary folder; keep the current user.
            f"user {getpass.getuser()}\n" + "".join(f"{line}\n" for line in self.settings)
        )
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.process = subprocess.Popen([binary, "-c", str(config)], stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()
