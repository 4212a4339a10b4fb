"""The store shared by the monitor, the bot and the DICOM node: one API (`store.database`) over the embedded SQLite
file (`store.sqlite_schema`) or PostgreSQL (`store.postgres_schema`), one repository module per area."""

from __future__ import annotations

from pathlib import Path

from store.database import Database, atomic
from store.postgres_schema import connect as connect_postgres
from store.sqlite_schema import Synchronous
from store.sqlite_schema import connect as connect_sqlite


def is_postgres_url(location: str | Path) -> bool:
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


def open_database(location: str | Path, synchronous: Synchronous = "FULL", busy_timeout_s: float = 30.0) -> Database:
    """Open (creating or upgrading its schema) the store at `location`: a `postgresql://` URL, or the path of a
    SQLite file, to which `synchronous` and `busy_timeout_s` apply (see `store.sqlite_schema.connect`)."""
    if is_postgres_url(location):
        return connect_postgres(str(location))
    return connect_sqlite(Path(location), synchronous, busy_timeout_s)


__all__ = ["Database", "atomic", "is_postgres_url", "open_database"]
