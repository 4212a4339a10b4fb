"""Pointing a service under test at its store (the `database` fixture): a SQLite file, or a PostgreSQL URL."""

from __future__ import annotations

from pathlib import Path

from store import is_postgres_url


def store_settings(location: Path | str, folder: Path) -> dict[str, object]:
    """Settings keyword arguments for the store at `location`; on PostgreSQL, HEMOWATCH_DB still names a file in
    `folder`, beside which the DICOM node keeps its spool."""
    if is_postgres_url(location):
        return {"database_url": str(location), "hemowatch_db": folder / "hemowatch.db"}
    return {"hemowatch_db": Path(location)}


def store_environment(location: Path | str, folder: Path) -> dict[str, str]:
    """The same as environment variables, for a service in a child process."""
    return {name.upper(): str(value) for name, value in store_settings(location, folder).items()}
