#    Licensed under the Apache License, Version 2.0 (the "License"); you may
#    not use this file except in compliance with the License. You may obtain
#    a copy of the License at
#
#         http://www.apache.org/licenses/LICENSE-2.0
#
#    Unless required by applicable law or agreed to in writing, software
#    distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
#    WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
#    License for the specific language governing permissions and limitations
#    under the License.

"""Schema upgrades through alembic, on the facade's engine."""

import os

from alembic import command as alembic_command
from alembic import config as alembic_config
from alembic import migration as alembic_migration
from alembic import script as alembic_script
from alembic import util as alembic_util
import sqlalchemy

from vfpool.db import api as db_api
from vfpool import exception

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


def require_head(engine: sqlalchemy.engine.Engine | None = None) -> None:
    """Raise :class:`~vfpool.exception.SchemaNotSynced` below head.

    A revision this code does not know is a newer release's: its
    migrations only add, so this code still runs on it (the rolling
    upgrade of doc/source/admin/upgrade.rst).
    """
    current = version(engine=engine)
    latest = head()
    if current == latest:
        return
    if current is not None and not _known(current):
        return
    raise exception.SchemaNotSynced(current=current or 'none (empty)',
                                    head=latest)


def _known(revision: str) -> bool:
    scripts = alembic_script.ScriptDirectory.from_config(_alembic_config())
    try:
        return scripts.get_revision(revision) is not None
    except alembic_util.CommandError:
        return False
