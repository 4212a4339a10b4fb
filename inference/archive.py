"""The files of a ZIP or a folder, read into memory; archives are never extracted to disk."""

from __future__ import annotations

import io
import threading
import zipfile
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from inference.errors import InputError
from inference.limits import Limits

_INFLATE_THREADS = 2
_INFLATED_AHEAD = 4  # members inflated ahead of the reader: both threads busy, only a few members in memory
_DAMAGED_ZIP = "The ZIP file is damaged or uses an unsupported compression."


def is_zip(data: bytes) -> bool:
    return data.startswith(b"PK\x03\x04") or data.startswith(b"PK\x05\x06")


def read_zip(source: bytes | bytearray | Path, limits: Limits) -> Iterator[bytes]:
    """The contents of every file in a ZIP (its bytes, or its path on disk, read from there as needed), in name
    order, within the size and compression-ratio caps.

    The sizes in the ZIP's central directory are checked before any member is opened, so a bomb is refused
    without inflating anything. They can lie, so each member is also read with a hard cap: no more than the
    directory declared. Members are inflated only a few ahead of the iterator, so a reader that parses one file at
    a time never holds them all.
    """
    try:
        with _open(source) as archive:
            members = sorted(
                (info for info in archive.infolist() if not info.is_dir() and not _skipped(info.filename)),
                key=lambda info: info.filename,
            )
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError, ValueError, OSError) as error:
        raise InputError(_DAMAGED_ZIP) from error
    if len(members) > limits.max_files:
        raise InputError(f"The ZIP holds {len(members)} files; at most {limits.max_files} are read.")
    if any(info.flag_bits & 0x1 for info in members):
        raise InputError("The ZIP is password-protected. Send it without a password.")
    declared = sum(info.file_size for info in members)
    if declared > limits.max_uncompressed_bytes or any(
        info.file_size > max(info.compress_size, 1) * limits.max_compression_ratio for info in members
    ):
        raise InputError(_bomb_message(limits))
    return _members(source, members, limits)


def _members(source: bytes | bytearray | Path, members: list[zipfile.ZipInfo], limits: Limits) -> Iterator[bytes]:
    """Each member's content in order, inflated by `_INFLATE_THREADS` threads at most `_INFLATED_AHEAD` members
    ahead of the reader: zlib releases the GIL, so members inflate side by side while the reader parses.

    Each thread reads through its own `ZipFile`: the members of one are not meant to be opened from several
    threads at once.
    """
    local = threading.local()
    opened: list[zipfile.ZipFile] = []

    def inflated(info: zipfile.ZipInfo) -> bytes:
        if not hasattr(local, "archive"):
            local.archive = _open(source)
            opened.append(local.archive)
        return _member(local.archive, info, limits)

    upcoming = iter(members)
    waiting: deque[Future[bytes]] = deque()
    pool = ThreadPoolExecutor(_INFLATE_THREADS, thread_name_prefix="zip-inflate")
    try:
        while True:
            while len(waiting) < _INFLATED_AHEAD and (info := next(upcoming, None)) is not None:
                waiting.append(pool.submit(inflated, info))
            if not waiting:
                return
            yield waiting.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        for archive in opened:
            archive.close()


def _open(source: bytes | bytearray | Path) -> zipfile.ZipFile:
    return zipfile.ZipFile(source if isinstance(source, Path) else io.BytesIO(source))


def _member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: Limits) -> bytes:
    try:
        with archive.open(info) as member:
            content = member.read(info.file_size + 1)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError, ValueError, OSError) as error:
        raise InputError(_DAMAGED_ZIP) from error
    if len(content) > info.file_size:  # inflates past what the directory says: a lying bomb
        raise InputError(_bomb_message(limits))
    return content


def read_folder(folder: Path, limits: Limits) -> Iterator[bytes]:
    """The contents of every file below a folder, in path order, within the same caps as a ZIP.

    The caps are checked at once; each file is read only when the iterator reaches it.
    """
    paths = sorted(
        path
        for path in folder.rglob("*")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )
    return read_files(paths, limits)


def read_files(paths: Sequence[Path], limits: Limits) -> Iterator[bytes]:
    """The contents of the files, in the order given, within the caps of a folder (checked at once)."""
    if len(paths) > limits.max_files:
        raise InputError(f"The folder holds {len(paths)} files; at most {limits.max_files} are read.")
    if sum(path.stat().st_size for path in paths) > limits.max_uncompressed_bytes:
        raise InputError(f"The folder holds more than {limits.max_uncompressed_bytes // 2**20} MB of files.")
    return (path.read_bytes() for path in paths)


def _skipped(name: str) -> bool:
    """macOS resource forks and hidden files are not part of the scan."""
    return name.startswith("__MACOSX/") or name.rsplit("/", 1)[-1].startswith(".")


def _bomb_message(limits: Limits) -> str:
    return (
        "The ZIP expands far more than a scan would (over "
        f"{limits.max_uncompressed_bytes // 2**20} MB or {limits.max_compression_ratio:.0f}× its size). "
        "It was not opened."
    )
