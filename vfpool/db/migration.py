"""Schema upgrades through alembic, on the facade's engine."""

import os

from alembic import command as alembic_command
from alembic import config as alembic_config
from alembic import migration as alembic_migration
from alembic import script as alembic_script
import sqlalchemy

from vfpool.db import api as db_api

_SCRIPT_LOCATION = os.path.join(os.path.dirname(__file__), 'migrations')


def _alembic_config(connection=None) -> alembic_config.Config:
    config = alembic_config.Config()
    config.set_main_option('script_location', _SCRIPT_LOCATION)
    config.attributes['connection'] = connection
    return config


def upgrade(revision: str = 'head',
            engine: sqlalchemy.engine.Engine | None = None) -> None:
    engine = engine or db_api.get_engine()
    with engine.begin() as connection:
        alembic_command.upgrade(_alembic_config(connection), revision)


def version(engine: sqlalchemy.engine.Engine | None = None) -> str | None:
    """The revision the database is at, or None before the first sync."""
    engine = engine or db_api.get_engine()
    with engine.connect() as connection:
        return alembic_migration.MigrationContext.configure(
            connection).get_current_revision()


def head() -> str | None:
    return alembic_script.ScriptDirectory.from_config(
        _alembic_config()).get_current_head()
