"""Alembic environment: runs on the connection `storage.schema.migrate` hands over.

There is no alembic.ini: the app builds the Alembic config in code and passes an open
connection inside a write transaction, which it commits once every revision has run, so a
migration is all or nothing.
"""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
