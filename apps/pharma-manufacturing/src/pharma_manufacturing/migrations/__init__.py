"""Alembic migration scripts, shipped in the wheel and run at start-up by `storage.schema`."""
