"""`hemowatch dicom echo AE@HOST:PORT`: check the link to a scanner, PACS or this node from the server."""

from __future__ import annotations

import argparse
import logging
import sys
import time

from core.settings import Settings
from dicomnode.echo import echo, parse_address


def run_dicom(args: argparse.Namespace, settings: Settings) -> int:
    try:
        target = parse_address(args.address)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)  # what went wrong is said below, in one line
    started = time.perf_counter()
    problem = echo(args.calling_ae or settings.dicom_ae_title, target, args.timeout)
    if problem is not None:
        print(f"{target}: {problem}", file=sys.stderr)
        return 1
    print(f"{target}: C-ECHO succeeded in {(time.perf_counter() - started) * 1000:.0f} ms")
    return 0
