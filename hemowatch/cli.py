"""The `hemowatch` command: parses arguments and hands each subcommand to the module that does the work."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from hemowatch import __version__


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hemowatch",
        description="Head CT haemorrhage triage and vitals monitoring through Telegram (decision support only).",
    )
    parser.add_argument("--version", action="version", version=f"hemowatch {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    classify = commands.add_parser(
        "classify", help="analyse head CT scans (PNG/JPEG, DICOM, ZIP or folder)",
        description="Prints one verdict per study: a picture, a DICOM file, or each series of a ZIP or folder of "
        "DICOM files. A folder of pictures gives one verdict per picture, or with --study one for them all.",
    )
    classify.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="one study per path")
    classify.add_argument(
        "--study", action="store_true",
        help="take a folder of pictures as the slices of one scan, ordered by file name (numbers in names compared "
        "as numbers, lowest slice first), and judge it as one study, as a DICOM series is",
    )
    classify.add_argument("--json", action="store_true", help="one JSON object per line per input")
    classify.add_argument("--overlay-dir", type=Path, help="write a heat-map overlay PNG per study here")
    classify.add_argument("--threshold", type=float, help="decision threshold (default: the model card's)")
    classify.add_argument("--model", type=Path, help="ONNX model (default: HEMOWATCH_MODEL or the shipped one)")

    commands.add_parser(
        "run", help="run the Telegram bot, the vitals monitor and the DICOM node (settings from env / .env)",
        description="Runs the Telegram bot, the vitals monitor and the DICOM node until Ctrl+C or SIGTERM. It needs "
        "only TELEGRAM_BOT_TOKEN (from @BotFather), set in the environment or in a .env file (the current folder's, "
        "then the project's; .env.example describes every setting). Everything else has a default: the database "
        "hemowatch.db in the current folder (HEMOWATCH_DB), an MQTT broker of its own on 127.0.0.1:1883 unless "
        "MQTT_URL names one (EMBEDDED_BROKER_PORT), the DICOM node on 127.0.0.1:11112 (DICOM_PORT; 0 turns it off) "
        "and the shipped model. Set ADMIN_USER_IDS (Telegram user ids) too, or alerts may reach nobody.",
    )

    demo = commands.add_parser(
        "demo", help="try the whole service in a web page, without Telegram (a local stand-in, example scans)"
    )
    demo.add_argument("--port", type=int, default=8080, help="port of the chat page on 127.0.0.1 (default 8080)")

    simulate = commands.add_parser("simulate", help="publish simulated patient vitals over MQTT")
    simulate.add_argument("--patients", type=int, default=3, help="number of patients (default 3)")
    simulate.add_argument("--rate", type=float, default=1.0, help="samples per second per patient (default 1)")
    simulate.add_argument("--broker", help="broker URL (default: MQTT_URL, else the embedded broker's address)")
    simulate.add_argument(
        "--scenario",
        default="stable",
        choices=["stable", "hypoxia", "hypertension", "deterioration", "offline"],
        help="what happens to the patients (default stable)",
    )
    simulate.add_argument(
        "--duration", type=float, help="seconds to run, waiting for the broker included (default: until interrupted)"
    )
    simulate.add_argument("--prefix", help="patient id prefix (default 'sim-')", default="sim-")

    dicom = commands.add_parser("dicom", help="DICOM node tools")
    dicom_commands = dicom.add_subparsers(dest="dicom_command", required=True, metavar="ACTION")
    echo = dicom_commands.add_parser("echo", help="C-ECHO another DICOM node (or this one) to check the link")
    echo.add_argument("address", metavar="AE@HOST:PORT", help="the node's AE title, host and port")
    echo.add_argument("--calling-ae", help="the AE title to call from (default: DICOM_AE_TITLE)")
    echo.add_argument("--timeout", type=float, default=10.0, help="seconds to wait (default 10)")

    site = commands.add_parser(
        "site", help="commission the model on this hospital's confirmed cases (a site profile) and look after it"
    )
    site_commands = site.add_subparsers(dest="site_command", required=True, metavar="ACTION")
    commission = site_commands.add_parser(
        "commission", help="fit a site profile on confirmed cases; adopted only when not worse than what is in use",
        description="CSV columns: path,hemorrhage[,patient]. A path is anything `classify` reads (picture, DICOM "
        "file, folder or ZIP of one series), relative to the CSV's folder; hemorrhage is 0 or 1 for that path (a "
        "series takes the study's label); rows of one patient share a patient value (default: one per row). "
        "Exit codes: 0 adopted, 2 bad input or too few cases, 3 judged worse and not adopted.",
    )
    commission.add_argument("csv", type=Path, metavar="CSV", help="the confirmed cases")
    site_commands.add_parser("update", help="refit from the commissioning cases and doctors' reads; never adopts a worse profile")
    report = site_commands.add_parser(
        "report", help="the profile in use, its figures and its agreement with doctors' reads")
    report.add_argument("--plot", type=Path, metavar="FILE", help="also write its ROC and calibration as a PNG")
    site_commands.add_parser("history", help="every change of the profile in use")
    site_commands.add_parser("rollback", help="go back to what was in use before the last change")
    site_commands.add_parser("off", help="stop using a site profile: verdicts come from the shipped model")

    admin = commands.add_parser("admin", help="server-side administration")
    admin_commands = admin.add_subparsers(dest="admin_command", required=True, metavar="ACTION")
    invite = admin_commands.add_parser("invite", help="create a one-time invitation link")
    invite.add_argument("role", choices=["doctor"], help="who the invitation is for")
    add_patient = admin_commands.add_parser(
        "add-patient", help="register a patient to monitor",
        description="Registers a patient, so the monitor accepts their vitals; then link a doctor to them with "
        "/invite doctor PATIENT_ID in the bot.",
    )
    add_patient.add_argument(
        "patient_id", metavar="PATIENT_ID", help="1-32 letters, digits, '-' or '_'; the bedside device publishes "
        "under it (topic hemowatch/patients/PATIENT_ID/vitals, with the default MQTT_TOPIC_PREFIX)",
    )
    add_patient.add_argument(
        "name", metavar="NAME", nargs="?", default="", help="the name alerts and /status show (default: the id)"
    )
    admin_commands.add_parser("patients", help="list the registered patients and who follows them")
    admin_commands.add_parser("alerts", help="list the open alerts, newest first, and who heard them")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    from core.settings import ScanSettings, Settings, SettingsError, read_settings

    try:  # each command validates only the settings it uses
        settings = read_settings(ScanSettings if args.command in ("classify", "demo", "site") else Settings)
    except SettingsError as error:
        print(f"hemowatch {args.command}: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # its request lines carry the bot token in the URL
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # a line per routine job run; failures still show
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # a few lines per association and per instance
    if args.command == "classify":
        from hemowatch.classify_command import run_classify

        return run_classify(args, settings)
    if args.command == "run":
        from hemowatch.run_command import run_service

        return run_service(settings)
    if args.command == "demo":
        from hemowatch.demo_command import run_demo

        return run_demo(args, settings)
    if args.command == "simulate":
        from hemowatch.simulate_command import run_simulator

        return run_simulator(args, settings)
    if args.command == "dicom":
        from hemowatch.dicom_command import run_dicom

        return run_dicom(args, settings)
    if args.command == "site":
        from hemowatch.site_command import run_site

        return run_site(args, settings)
    from hemowatch.admin_command import run_admin

    return run_admin(args, settings)


if __name__ == "__main__":
    sys.exit(main())
