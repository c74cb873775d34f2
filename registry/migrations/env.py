"""Alembic environment of the registry: always run in-process on a connection the registry hands over.

``registry.store.Registry`` opens the connection, takes the database's lock (PostgreSQL: an advisory lock;
SQLite: ``BEGIN IMMEDIATE``) and passes it as ``config.attributes["connection"]``, so migrations run inside
that transaction and concurrent processes apply each one exactly once.
"""

from alembic import context

from registry.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
