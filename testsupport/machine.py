"""The machine a benchmark ran on, printed with its figures."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import psutil


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    load = ", ".join(f"{value:.1f}" for value in psutil.getloadavg())
    return (f"{platform.platform()}, {cpu}, {os.cpu_count()} logical CPUs, "
            f"{psutil.virtual_memory().total / 2**30:.1f} GB RAM, load average {load}, Python {platform.python_version()}")
