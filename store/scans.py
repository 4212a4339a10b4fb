"""The audit trail of scan triage: one row per analysed series. The scan itself is never stored."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from store.database import Database



@dataclass(frozen=True, slots=True)
class ScanAudit:
    """Who asked, when, about which file (by its SHA-256 only), and what the model answered."""

    sha256: str
    verdict: str
    probability: float | None
    threshold: float
    model_version: str
    telegram_id: int
    at: float
    n_slices: int
    n_assessable: int


def record_scan(db: Database, audit: ScanAudit) -> int:
    """Store one audit row; returns its id."""
    return db.insert("scans", asdict(audit))


def scans_of(db: Database, telegram_id: int) -> list[ScanAudit]:
    """The audit rows of one user, oldest first."""
    rows = db.query("select * from scans where telegram_id = ? order by id", [telegram_id])
    return [ScanAudit(**{key: value for key, value in row.items() if key != "id"}) for row in rows]


def sent_by(db: Database, scan_id: int) -> int | None:
    """Who sent the scan of audit row `scan_id`, or None when there is no such row."""
    row = db.execute("select telegram_id from scans where id = ?", [scan_id]).fetchone()
    return row[0] if row else None
