"""The spool: every accepted instance is on disk (written, flushed, renamed into place) before "success".

Layout: `<spool>/<study hash>/<series hash>/<instance hash>.dcm`, and beside each series folder a
`<series hash>.json` with the calling AE title and when its first instance arrived. Each instance is
de-identified (`dicomnode.deidentify`) before its first byte is written.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite

from dicomnode.deidentify import deidentify


def uid_hash(uid: str) -> str:
    """The key a study or series is known by: a hash of its UID, never the UID."""
    return hashlib.sha256(uid.strip().encode()).hexdigest()[:32]


class SpoolFull(Exception):
    """Writing would take the spool over its cap."""


@dataclass(frozen=True, slots=True)
class SpooledSeries:
    study_hash: str
    series_hash: str
    folder: Path
    ae_title: str  # the calling AE title of its first instance
    received_at: float  # when this instance arrived (for a series found in the spool: its newest file)

    def first_received_at(self) -> float:
        """When the series' first instance arrived (from the note written with it)."""
        try:
            return float(json.loads(self.folder.with_suffix(".json").read_text())["first_received_at"])
        except (OSError, ValueError, KeyError):
            return self.received_at


class Spool:
    """Thread-safe: the SCP writes from its association threads, the node deletes after analysis."""

    def __init__(self, root: Path, max_bytes: int, keep_accession: bool) -> None:
        self.root = root
        self._keep_accession = keep_accession
        self._incoming = root / ".incoming"
        self._incoming.mkdir(parents=True, exist_ok=True)
        for leftover in self._incoming.iterdir():  # half-written before a crash: never answered "success"
            leftover.unlink(missing_ok=True)
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._used = sum(path.stat().st_size for path in root.rglob("*.dcm"))

    @property
    def used_bytes(self) -> int:
        """What the spooled instances take, counted against the cap."""
        return self._used

    def write(self, dataset: Dataset, file_meta: FileMetaDataset, ae_title: str, now: float) -> SpooledSeries:
        """Write one instance durably; SpoolFull when it would not fit under the cap."""
        study_hash = uid_hash(dataset.StudyInstanceUID)
        series_hash = uid_hash(dataset.SeriesInstanceUID)
        dataset.file_meta = file_meta
        deidentify(dataset, self._keep_accession)
        temporary = self._incoming / f"{uid_hash(dataset.SOPInstanceUID)}.{threading.get_ident()}.part"
        if self._used + len(dataset.get("PixelData", b"")) > self._max_bytes:  # full: do not even write it
            raise SpoolFull(f"the spool holds {self._used / 2**30:.2f} GB")
        try:
            with open(temporary, "wb") as handle:
                dcmwrite(handle, dataset, enforce_file_format=True)
                handle.flush()
                os.fsync(handle.fileno())
                size = handle.tell()
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        with self._lock:
            if self._used + size > self._max_bytes:
                temporary.unlink(missing_ok=True)
                raise SpoolFull(f"the spool holds {self._used / 2**30:.2f} GB")
            self._used += size
        try:
            folder = self.root / study_hash / series_hash
            folder.mkdir(parents=True, exist_ok=True)
            origin = folder.with_suffix(".json")
            if not origin.exists():
                _write_durably(origin, json.dumps({"ae_title": ae_title, "first_received_at": now}).encode())
            target = folder / f"{uid_hash(dataset.SOPInstanceUID)}.dcm"
            previous = target.stat().st_size if target.exists() else 0  # the same instance sent again
            os.replace(temporary, target)
            _fsync_dir(folder)
        except BaseException:
            with self._lock:
                self._used -= size
            temporary.unlink(missing_ok=True)
            raise
        with self._lock:
            self._used -= previous
        return SpooledSeries(study_hash, series_hash, folder, ae_title, now)

    def pending(self) -> list[SpooledSeries]:
        """Every series waiting in the spool (after a restart: those received before it)."""
        found = []
        for origin in sorted(self.root.glob("*/*.json")):
            folder = origin.with_suffix("")
            try:
                facts = json.loads(origin.read_text())
            except (OSError, ValueError):
                facts = {"ae_title": "unknown", "first_received_at": origin.stat().st_mtime}
            if folder.is_dir():
                newest = max((path.stat().st_mtime for path in folder.glob("*.dcm")), default=0.0)
                found.append(SpooledSeries(folder.parent.name, folder.name, folder, facts["ae_title"],
                                           max(newest, facts["first_received_at"])))
            else:
                origin.unlink(missing_ok=True)
        return found

    def remove(self, series: SpooledSeries, files: list[Path]) -> None:
        """Delete analysed instances; the series folder goes once empty (a late instance keeps it)."""
        freed = 0
        for path in files:
            try:
                freed += path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                continue
        with self._lock:
            self._used -= freed
        try:
            series.folder.rmdir()
        except OSError:
            return  # not empty: instances arrived during the analysis
        series.folder.with_suffix(".json").unlink(missing_ok=True)
        try:
            series.folder.parent.rmdir()
        except OSError:
            pass


def _write_durably(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{threading.get_ident()}.{time.monotonic_ns()}")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _fsync_dir(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
