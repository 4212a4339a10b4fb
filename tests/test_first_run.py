"""First-run friction, tried as a new user does: each mistake ends in one plain line, never a traceback."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from stores import store_environment

from core.settings import DEFAULT_MODEL, PROJECT_ROOT, Settings, SettingsError, read_settings
from testsupport.broker import free_port

REPO = Path(__file__).resolve().parents[1]
SLICE = "001.png"


def hemowatch(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`hemowatch ARGS` in a clean environment (only `env` set), run from `tmp_path`."""
    clean = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONPATH": str(REPO), **env}
    return subprocess.run([sys.executable, "-m", "hemowatch.cli", *args], cwd=tmp_path, env=clean,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("name", "value"),
    [("ADMIN_USER_IDS", "me"), ("MQTT_URL", "localhost:1883"), ("MAX_UPLOAD_MB", "-1")],
)
def test_a_wrong_setting_is_one_line_naming_it(tmp_path: Path, name: str, value: str) -> None:
    done = hemowatch(tmp_path, "run", TELEGRAM_BOT_TOKEN="123:abc", **{name: value})
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"hemowatch run: The setting {name} is wrong: ")
    assert str(tmp_path / ".env") in line and str(PROJECT_ROOT / ".env") in line


@pytest.mark.parametrize("ids", ["12,³", "١٢", "12345678901234567"])
def test_admin_user_ids_are_plain_digits(monkeypatch: pytest.MonkeyPatch, ids: str) -> None:
    monkeypatch.setenv("ADMIN_USER_IDS", ids)
    with pytest.raises(SettingsError, match=r"ADMIN_USER_IDS is wrong: should be Telegram user ids \(numbers\)"):
        read_settings(Settings)


def test_half_a_window_is_refused_in_one_line(tmp_path: Path, head_ct_dir: Path) -> None:
    done = hemowatch(tmp_path, "classify", str(head_ct_dir / "images" / SLICE), WINDOW_CENTER="35")
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert "set WINDOW_CENTER and WINDOW_WIDTH together, or neither to use the model's window" in line


def test_a_wrong_setting_from_dot_env_in_the_current_folder_is_found(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("ADMIN_USER_IDS=me\n")
    done = hemowatch(tmp_path, "admin", "patients")
    assert done.returncode == 2 and "ADMIN_USER_IDS" in done.stderr


def test_a_bad_setting_classify_does_not_use_does_not_stop_it(tmp_path: Path, head_ct_dir: Path) -> None:
    if not DEFAULT_MODEL.is_file():
        pytest.skip(f"the model is not at {DEFAULT_MODEL}")
    done = hemowatch(tmp_path, "classify", "--json", str(head_ct_dir / "images" / SLICE),
                     RULE_HOLD_S="abc", ADMIN_USER_IDS="me", MQTT_URL="localhost:1883")
    assert done.returncode == 0, done.stderr
    assert '"verdict": "hemorrhage"' in done.stdout
    bad = hemowatch(tmp_path, "classify", str(head_ct_dir / "images" / SLICE), MAX_UPLOAD_MB="-1")
    assert bad.returncode == 2 and "MAX_UPLOAD_MB" in bad.stderr and "Traceback" not in bad.stderr


def test_without_a_token_it_says_where_it_looked_for_dot_env(tmp_path: Path) -> None:
    done = hemowatch(tmp_path, "run")
    assert done.returncode == 2
    assert str(tmp_path / ".env") in done.stderr and str(PROJECT_ROOT / ".env") in done.stderr


def test_the_embedded_broker_port_taken_suggests_using_that_broker(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = hemowatch(tmp_path, "run", TELEGRAM_BOT_TOKEN="123:abc", TELEGRAM_API_URL="http://127.0.0.1:9",
                         EMBEDDED_BROKER_PORT=str(port))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert f"MQTT_URL=mqtt://127.0.0.1:{port}" in done.stderr
    assert len([line for line in done.stderr.splitlines() if "already taken" in line]) == 1


def test_a_taken_dicom_port_is_one_line_naming_it(tmp_path: Path) -> None:
    if not DEFAULT_MODEL.is_file():
        pytest.skip(f"the model is not at {DEFAULT_MODEL}")  # the scan workers start before the DICOM node
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = hemowatch(tmp_path, "run", TELEGRAM_BOT_TOKEN="123:abc", TELEGRAM_API_URL="http://127.0.0.1:9",
                         EMBEDDED_BROKER_PORT=str(free_port()), DICOM_PORT=str(port))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1] == (
        f"Port {port} on 127.0.0.1 is already taken, so the DICOM node cannot start; another DICOM node may be "
        "running there. Set DICOM_PORT to a free port (DICOM_PORT=0 runs without the node)."
    )


@pytest.mark.timeout(180)
def test_the_demo_takes_free_ports_says_which_and_ctrl_c_stops_it_without_a_traceback(tmp_path: Path) -> None:
    if not DEFAULT_MODEL.is_file():
        pytest.skip(f"the model is not at {DEFAULT_MODEL}")
    page = free_port()
    clean = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONPATH": str(REPO)}
    with socket.socket() as standard, (tmp_path / "demo.log").open("w") as log:
        with contextlib.suppress(OSError):  # when this fails, something else holds the port: taken either way
            standard.bind(("127.0.0.1", 11112))
            standard.listen()
        demo = subprocess.Popen([sys.executable, "-m", "hemowatch.cli", "demo", "--port", str(page)], cwd=tmp_path,
                                env=clean, stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True)
        try:
            started = demo.stdout.readline()  # once the service runs
            os.killpg(demo.pid, signal.SIGINT)  # what a terminal sends on Ctrl+C: to every process of the group
            demo.communicate(timeout=60)
        finally:
            if demo.poll() is None:
                os.killpg(demo.pid, signal.SIGKILL)
    errors = (tmp_path / "demo.log").read_text()
    assert started.startswith(f"HemoWatch demo: open http://127.0.0.1:{page} in a browser"), errors
    dicom = re.search(r"its DICOM node is HEMOWATCH@127\.0\.0\.1:(\d+)\.$", started.strip())
    assert dicom is not None and int(dicom[1]) != 11112, started
    assert demo.returncode == 0, errors
    assert "Traceback" not in errors and "KeyboardInterrupt" not in errors


def test_ctrl_c_during_a_batch_keeps_the_rows_printed_so_far(tmp_path: Path, head_ct_dir: Path) -> None:
    """The rows go to a pipe of one page that is read on only after Ctrl+C: the batch, whose rows need several
    pages, cannot have finished before the signal arrives."""
    if not DEFAULT_MODEL.is_file():
        pytest.skip(f"the model is not at {DEFAULT_MODEL}")
    paths = [str(head_ct_dir / "images" / f"{number:03d}.png") for number in range(100)]
    clean = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONPATH": str(REPO)}
    reading, writing = os.pipe()
    assert fcntl.fcntl(writing, fcntl.F_SETPIPE_SZ, 4096) == 4096  # about 30 rows
    process = subprocess.Popen([sys.executable, "-m", "hemowatch.cli", "classify", *paths], cwd=tmp_path, env=clean,
                               stdout=writing, stderr=subprocess.PIPE, text=True)
    os.close(writing)
    with open(reading, "rb", buffering=0) as rows:  # unbuffered: takes from the pipe only the lines read
        heading = rows.readline().decode()
        first = rows.readline().decode()  # printed as soon as the first input is done
        process.send_signal(signal.SIGINT)
        rest = rows.read().decode()
    _, errors = process.communicate(timeout=60)
    assert heading.startswith("input") and paths[0] in first
    assert process.returncode == 130
    assert "Traceback" not in errors and "interrupted;" in errors
    assert len(rest.splitlines()) < len(paths) - 1


def help_of(capsys: pytest.CaptureFixture[str], *command: str) -> str:
    """`hemowatch COMMAND --help`, its lines joined by single spaces (argparse wraps to the terminal's width)."""
    from hemowatch.cli import main

    with pytest.raises(SystemExit):
        main([*command, "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_run_help_says_what_run_needs(capsys: pytest.CaptureFixture[str]) -> None:
    assert "It needs only TELEGRAM_BOT_TOKEN (from @BotFather), set in the environment or in a .env file" in help_of(
        capsys, "run")


def test_add_patient_help_describes_its_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    shown = help_of(capsys, "admin", "add-patient")
    assert "PATIENT_ID 1-32 letters, digits, '-' or '_'; the bedside device publishes under it" in shown
    assert "NAME the name alerts and /status show (default: the id)" in shown


def test_make_run_installs_only_when_pyproject_changed(tmp_path: Path) -> None:
    (tmp_path / "Makefile").write_text((REPO / "Makefile").read_text())
    (tmp_path / "pyproject.toml").write_text("[project]\n")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").touch()

    def planned() -> str:
        return subprocess.run(["make", "-n", "run"], cwd=tmp_path, capture_output=True, text=True, timeout=60).stdout

    assert "pip install" in planned()  # never installed
    stamp = tmp_path / ".venv" / ".installed"
    stamp.touch()
    assert "pip install" not in planned() and ".venv/bin/hemowatch run" in planned()
    later = time.time() + 5
    os.utime(tmp_path / "pyproject.toml", (later, later))  # pyproject.toml changed since
    assert "pip install" in planned()


def test_routine_scheduler_job_runs_stay_out_of_the_default_log(
    database: Path | str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import logging

    from hemowatch.cli import main

    monkeypatch.chdir(tmp_path)
    for name, value in store_environment(database, tmp_path).items():
        monkeypatch.setenv(name, value)
    assert main(["admin", "patients"]) == 0
    assert not logging.getLogger("apscheduler.executors.default").isEnabledFor(logging.INFO)
    assert logging.getLogger("apscheduler.executors.default").isEnabledFor(logging.WARNING)
