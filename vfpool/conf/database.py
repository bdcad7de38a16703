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

"""The ``[database]`` group comes from oslo.db; only its default changes."""

import os

from oslo_db import options as db_options


def sqlite_default(conf) -> str:
    return 'sqlite:///' + os.path.join(conf.state_path, 'vfpool.sqlite')


def register_opts(conf):
    db_options.set_defaults(conf)


def set_connection_default(conf):
    """Point ``[database] connection`` at SQLite under ``state_path``.

    Done after the config files are parsed, because the default depends
    on ``state_path``.
    """
    if not conf.database.connection:
        os.makedirs(conf.state_path, exist_ok=True)
        conf.set_default('connection', sqlite_default(conf),
                         group='database')


def list_opts():
    return {}
