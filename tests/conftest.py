"""Fixtures shared by every test: paths to the reference data, a real mosquitto broker, a local Bot API server;
and `eventually`, the wait for work done in other tasks, threads or processes."""

from __future__ import annotations

import asyncio
import getpass
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from botapi import BotApiServer

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
HEAD_CT = SHARED_DATA / "head-ct"
GE_SERIES = SHARED_DATA / "dicom" / "ge-head-ct"
CT_ICH = SHARED_DATA / "ct-ich"


async def eventually(check: Callable[[], object], timeout: float = 15.0, what: str = "the condition") -> None:
    """Wait until `check()` is true; TimeoutError naming `what` after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"waited {timeout:g} s in vain for {what}")
        await asyncio.sleep(0.01)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def head_ct_dir() -> Path:
    if not (HEAD_CT / "labels.csv").is_file():
        pytest.skip(f"reference slices not found at {HEAD_CT} (they live in ../shared beside the checkout)")
    return HEAD_CT


@pytest.fixture(scope="session")
def ct_ich_dir() -> Path:
    if not (CT_ICH / "labels.csv").is_file():
        pytest.skip(f"CT-ICH scans not found at {CT_ICH} (they live in ../shared beside the checkout)")
    return CT_ICH


@pytest.fixture(scope="session")
def ge_series_dir() -> Path:
    if not GE_SERIES.is_dir():
        pytest.skip(f"reference DICOM series not found at {GE_SERIES} (it lives in ../shared beside the checkout)")
    return GE_SERIES


@dataclass
class Mosquitto:
    """A real mosquitto broker on a free loopback port; `restart()` simulates an outage."""

    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        config = self.workdir / "mosquitto.conf"
        config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {self.workdir}/\nmax_queued_messages 0\n"
            # Started as root, mosquitto would switch to its own user and could not save its persistence
            # file in our private temporary folder; keep the current user.
            f"user {getpass.getuser()}\n"
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


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    if not (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()):
        pytest.fail("mosquitto is not installed: `apt-get install mosquitto` (make test does this)")
    broker = Mosquitto(port=free_port(), workdir=tmp_path)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
async def bot_api() -> AsyncIterator[BotApiServer]:
    """A local Telegram Bot API server (tests/botapi.py); point TELEGRAM_API_URL at `bot_api.url`."""
    async with BotApiServer() as server:
        yield server
