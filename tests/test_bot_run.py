"""`hemowatch run` as a user starts it: only a token (and here the local Bot API server's address) set; and as
it stops: SIGTERM, Ctrl+C in a terminal, kill -9, each leaving no process of it behind. One database file takes
one service; under systemd it says when it is ready and pings the watchdog. A user's first start and the one
service a SQLite file takes are on SQLite; the rest on the store of the `database` fixture."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import psutil
import pytest
from stores import store_environment

from localbotapi import BotApiServer
from testsupport.service_process import RUN, clean_env, read_lines, running_in_session, until_logged
from testsupport.waiting import eventually

pytestmark = pytest.mark.timeout(120)


async def test_without_a_token_it_says_how_to_get_one(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        *RUN, cwd=tmp_path, env=clean_env(tmp_path), stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await process.communicate()
    assert process.returncode == 2
    assert "@BotFather" in stderr.decode() and ".env" in stderr.decode()


async def test_runs_with_only_a_token_and_stops_cleanly_on_sigterm(bot_api: BotApiServer, tmp_path: Path) -> None:
    env = clean_env(tmp_path, TELEGRAM_BOT_TOKEN=bot_api.token, TELEGRAM_API_URL=bot_api.url)
    process = await asyncio.create_subprocess_exec(*RUN, cwd=tmp_path, env=env, stderr=asyncio.subprocess.PIPE)
    log: list[str] = []
    reading = asyncio.create_task(read_lines(process.stderr, log))
    try:
        sent = bot_api.send_text(77, "/start")
        reply = await bot_api.wait_for_message(77, after=sent, timeout=60)
        assert "I don't know you yet" in reply["text"]
        assert {command["command"] for command in bot_api.commands} >= {"status", "help"}
        assert (tmp_path / "hemowatch.db").is_file()
        await until_logged(log, "subscribed to hemowatch/patients/+/vitals")  # the embedded broker serves
        await until_logged(log, f"DICOM node HEMOWATCH listening on 127.0.0.1:{env['DICOM_PORT']}")
        echoed = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hemowatch.cli", "dicom", "echo", f"HEMOWATCH@127.0.0.1:{env['DICOM_PORT']}",
            cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE,
        )
        output, _ = await echoed.communicate()
        assert echoed.returncode == 0 and "C-ECHO succeeded" in output.decode()
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 30)
        await reading
    assert process.returncode == 0, "".join(log[-30:])
    assert "HemoWatch is stopping" in "".join(log)


@asynccontextmanager
async def service_in_a_session(
    bot_api: BotApiServer, tmp_path: Path, **store: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, list[str]]]:
    """`hemowatch run` as the leader of a session (and process group) of its own, once it runs; its log lines.
    Whatever of the session is left at the end is killed. `store` (environment variables) says where its store
    is; without it, hemowatch.db in `tmp_path`."""
    env = clean_env(tmp_path, TELEGRAM_BOT_TOKEN=bot_api.token, TELEGRAM_API_URL=bot_api.url, **store)
    process = await asyncio.create_subprocess_exec(*RUN, cwd=tmp_path, env=env, stderr=asyncio.subprocess.PIPE,
                                                   start_new_session=True)
    log: list[str] = []
    reading = asyncio.create_task(read_lines(process.stderr, log))
    try:
        await until_logged(log, "HemoWatch is running as @")
        yield process, log
    finally:
        for left in running_in_session(process.pid):
            left.kill()
        await process.wait()
        await reading


def kinds(processes: list[psutil.Process]) -> list[str]:
    """What each process is, told by its command line, sorted."""
    def kind(process: psutil.Process) -> str:
        command = " ".join(process.cmdline())
        if "resource_tracker" in command:
            return "resource tracker"
        return "scan worker" if "spawn_main" in command else "service"
    return sorted(kind(process) for process in processes)


EXPECTED = ["resource tracker", "scan worker", "scan worker", "service"]  # SCAN_CONCURRENCY is 2 by default


async def test_ctrl_c_in_a_terminal_stops_it_cleanly_without_a_traceback(
    bot_api: BotApiServer, database: Path | str, tmp_path: Path
) -> None:
    async with service_in_a_session(bot_api, tmp_path, **store_environment(database, tmp_path)) as (service, log):
        assert kinds(running_in_session(service.pid)) == EXPECTED
        os.killpg(service.pid, signal.SIGINT)  # what a terminal sends on Ctrl+C: to every process of the group
        await asyncio.wait_for(service.wait(), 60)
        await eventually(lambda: not running_in_session(service.pid), 30, "the workers and the tracker to end")
    assert service.returncode == 0
    assert "HemoWatch is stopping" in "".join(log)
    assert "Traceback" not in "".join(log) and "KeyboardInterrupt" not in "".join(log), "".join(log)


async def test_after_kill_9_no_process_of_the_service_is_left(
    bot_api: BotApiServer, database: Path | str, tmp_path: Path
) -> None:
    async with service_in_a_session(bot_api, tmp_path, **store_environment(database, tmp_path)) as (service, _):
        assert kinds(running_in_session(service.pid)) == EXPECTED
        service.kill()
        await service.wait()
        await eventually(lambda: not running_in_session(service.pid), 30, "the workers and the tracker to end")


async def test_a_second_service_on_the_database_is_refused_in_one_line_until_the_first_is_killed(
    bot_api: BotApiServer, tmp_path: Path
) -> None:
    database = (tmp_path / "hemowatch.db").resolve()
    async with service_in_a_session(bot_api, tmp_path) as (first, _):
        env = clean_env(tmp_path, TELEGRAM_BOT_TOKEN=bot_api.token, TELEGRAM_API_URL=bot_api.url)
        second = await asyncio.create_subprocess_exec(*RUN, cwd=tmp_path, env=env, stderr=asyncio.subprocess.PIPE)
        _, stderr = await asyncio.wait_for(second.communicate(), 60)
        assert second.returncode == 1
        assert stderr.decode().splitlines() == [
            f"Another HemoWatch (pid {first.pid}) is already running on the database {database}, so this one does "
            "not start. Only one HemoWatch may use a SQLite database file; to run several instances side by side, "
            'give them one PostgreSQL database in DATABASE_URL (see "Several instances" in docs/operations.md).'
        ]
        first.kill()  # no chance to let go of anything: the kernel drops the lock with the process
        await first.wait()
    async with service_in_a_session(bot_api, tmp_path) as (third, _):
        assert (tmp_path / "hemowatch.db.lock").read_text() == f"{third.pid}\n"


async def test_under_systemd_it_says_ready_pings_the_watchdog_and_says_when_it_stops(
    bot_api: BotApiServer, database: Path | str, tmp_path: Path
) -> None:
    """As a `Type=notify` unit with `WatchdogSec=0.4` would run it: systemd's socket in NOTIFY_SOCKET (a path
    short enough for a unix socket, which pytest's folder is not) and the watchdog's timeout in WATCHDOG_USEC."""
    with tempfile.TemporaryDirectory(prefix="hw-") as folder, socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(f"{folder}/notify")
        systemd.setblocking(False)
        env = clean_env(tmp_path, TELEGRAM_BOT_TOKEN=bot_api.token, TELEGRAM_API_URL=bot_api.url,
                        NOTIFY_SOCKET=f"{folder}/notify", WATCHDOG_USEC="400000",
                        **store_environment(database, tmp_path))
        process = await asyncio.create_subprocess_exec(*RUN, cwd=tmp_path, env=env, stderr=asyncio.subprocess.DEVNULL)
        messages: list[str] = []

        async def receive() -> None:
            messages.append((await asyncio.wait_for(asyncio.get_running_loop().sock_recv(systemd, 64), 60)).decode())

        try:
            while "READY=1" not in messages or messages[messages.index("READY=1"):].count("WATCHDOG=1") < 3:
                await receive()
        finally:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 30)
        while "STOPPING=1" not in messages:
            await receive()
    assert process.returncode == 0
    assert messages[0] == "WATCHDOG=1"  # pinged from the start, before it is ready
    assert [message for message in messages if message != "WATCHDOG=1"] == ["READY=1", "STOPPING=1"]
