"""`hemowatch run` in a process of its own, as tests and benchmarks start it: its environment, its log, its session's
processes."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import psutil

from testsupport.broker import free_port
from testsupport.waiting import eventually

RUN = [sys.executable, "-m", "hemowatch.cli", "run"]
REPO = Path(__file__).resolve().parents[1]


def clean_env(tmp_path: Path, **values: str) -> dict[str, str]:
    """No HemoWatch settings but `values` (and free ports for the embedded broker and the DICOM node, as 1883
    and 11112 may be taken)."""
    return {
        "PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONPATH": str(REPO),
        "EMBEDDED_BROKER_PORT": str(free_port()), "DICOM_PORT": str(free_port()), **values,
    }


def running_in_session(session: int) -> list[psutil.Process]:
    """The processes of `session` still running (a zombie has ended: only its exit status waits to be read)."""
    found = []
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) == session and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass
    return found


async def read_lines(stream: asyncio.StreamReader, into: list[str]) -> None:
    async for line in stream:
        into.append(line.decode(errors="replace"))


async def until_logged(log: list[str], text: str) -> None:
    try:
        await eventually(lambda: any(text in line for line in log), 30, f"{text!r} in the log")
    except TimeoutError as error:
        raise TimeoutError(f"{error}; the log ends: {''.join(log[-20:])}") from None
