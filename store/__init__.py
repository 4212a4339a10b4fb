"""The SQLite store shared by the monitor and the bot: schema in `schema`, one repository module per area."""

from store.schema import SCHEMA_VERSION, open_database

__all__ = ["SCHEMA_VERSION", "open_database"]
