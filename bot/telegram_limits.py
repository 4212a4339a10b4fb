"""Telegram's length limits, and fitting our texts into them.

Telegram refuses a message text longer than 4,096 characters and a caption longer than 1,024, counted after
HTML parsing. Lengths here are counted in UTF-16 code units (an emoji counts twice), never less than
Telegram's count, and the HTML is counted as written, never less than the text it shows: what fits here
fits there.
"""

from __future__ import annotations

from collections.abc import Iterable

MAX_TEXT = 4096
MAX_CAPTION = 1024
NAME_MAX = 100  # the most of a name (a patient's, a person's) a message shows; /addpatient keeps no more
IDENTIFIER_MAX = 64  # the most of an identifier from outside (an accession number, an id typed by a user)


def length(text: str) -> int:
    """`text`'s length in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def clip(text: str, limit: int) -> str:
    """`text` if it fits in `limit` code units, else its beginning and "…" in that many."""
    if length(text) <= limit:
        return text
    kept = used = 0
    for char in text:
        used += 2 if ord(char) > 0xFFFF else 1
        if used > limit - 1:  # room for "…"
            break
        kept += 1
    return text[:kept] + "…"


def pages(entries: Iterable[str], limit: int) -> list[str]:
    """The entries (each one or more lines) joined by line breaks into pages of at most `limit` code units.

    An entry stays whole on one page where it fits on a page of its own; a longer one is split between its
    lines, and a line longer than a page is clipped.
    """
    found: list[str] = []
    page = ""
    for entry in entries:
        for piece in [entry] if length(entry) <= limit else entry.split("\n"):
            piece = clip(piece, limit)
            if page and length(page) + 1 + length(piece) > limit:
                found.append(page)
                page = ""
            page = f"{page}\n{piece}" if page else piece
    if page:
        found.append(page)
    return found
