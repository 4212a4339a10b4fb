"""The one error the analysis raises for input it cannot use."""

from __future__ import annotations


class InputError(Exception):
    """A scan that cannot be analysed, with a plain message safe to show the person who sent it.

    The message never carries a traceback, a file name from inside an archive or any value read from the scan's
    header, so it cannot leak who the scan belongs to.
    """
