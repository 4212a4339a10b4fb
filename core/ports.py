"""A listening port that is taken: each part that listens raises `PortTaken` with its own advice, and the
commands print it as one line and stop (exit code 1), never as a traceback."""

from __future__ import annotations

import errno


class PortTaken(Exception):
    """A port HemoWatch listens on is in use; the message names the setting (or option) that moves it."""


def is_taken(error: BaseException | None) -> bool:
    """Whether `error` is the operating system saying the address is already in use."""
    return isinstance(error, OSError) and error.errno == errno.EADDRINUSE
