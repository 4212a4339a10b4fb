"""One store API over two engines: the embedded SQLite file (sqlite-utils), or PostgreSQL (psycopg 3) when
several instances share the data.

Store functions write one SQL text for both, with `?` placeholders and the SQL the two engines share
(`insert ... on conflict`, `returning`, `is not distinct from`). A connection is used by one thread at a time.

Write transactions (`atomic`) are serialised on both engines: SQLite takes its write lock at BEGIN IMMEDIATE,
and PostgreSQL a transaction-level advisory lock at the start of each, so a read-then-write in a store function
sees what it expects on either engine, also with several instances writing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Literal, Protocol

Params = Sequence[Any]


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Database(ABC):
    """A connection to the store; `store.open_database` gives the right one for a location."""

    engine: Literal["sqlite", "postgresql"]

    @abstractmethod
    def execute(self, sql: str, params: Params = ()) -> Cursor:
        """Run one statement; rows come back as tuples."""

    @abstractmethod
    def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        """Run one statement for each of `rows`."""

    @abstractmethod
    def query(self, sql: str, params: Params = ()) -> Iterator[dict[str, Any]]:
        """Run a query; rows come back as dicts by column name."""

    @abstractmethod
    def atomic(self) -> AbstractContextManager[None]:
        """One write transaction around the block; nested blocks join the outer one, so store functions compose."""

    @abstractmethod
    def close(self) -> None:
        """Close the connection."""

    def insert(self, table: str, row: dict[str, Any]) -> int:
        """Insert one row; returns its `id`."""
        columns = ", ".join(row)
        marks = ", ".join("?" * len(row))
        sql = f"insert into {table} ({columns}) values ({marks}) returning id"
        return self.execute(sql, list(row.values())).fetchone()[0]

    def upsert(self, table: str, row: dict[str, Any], key: Sequence[str]) -> None:
        """Insert one row, or update the row with the same `key` columns to it."""
        columns = ", ".join(row)
        marks = ", ".join("?" * len(row))
        changes = ", ".join(f"{name} = excluded.{name}" for name in row if name not in key)
        self.execute(
            f"insert into {table} ({columns}) values ({marks}) on conflict ({', '.join(key)}) do update set {changes}",
            list(row.values()),
        )


@contextmanager
def atomic(db: Database) -> Iterator[None]:
    """`db.atomic()`, as a function for store code."""
    with db.atomic():
        yield
