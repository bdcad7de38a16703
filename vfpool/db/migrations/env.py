"""alembic environment: runs on the connection vfpool hands it."""

from alembic import context

from vfpool.db import models

config = context.config
target_metadata = models.Base.metadata


def run_migrations_online():
    connection = config.attributes.get('connection')
    if connection is None:
        raise RuntimeError('vfpool runs its migrations through '
                           'vfpool.db.migration, which passes a connection')
    context.configure(connection=connection,
                      target_metadata=target_metadata,
                      render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
