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

"""Parsing of command lines and config files for vfpool's programs."""

from oslo_config import cfg
from oslo_log import log as logging

from vfpool import conf as vfpool_conf
from vfpool.conf import database as db_conf
from vfpool import rpc
from vfpool import version


def parse_args(argv: list[str], conf: cfg.ConfigOpts | None = None,
               default_config_files: list[str] | None = None,
               setup_logging: bool = True) -> cfg.ConfigOpts:
    """Build (or fill) a ``ConfigOpts`` from the command line.

    ``argv`` excludes the program name, as oslo.config expects.
    """
    if conf is None:
        conf = vfpool_conf.new_conf()
    logging.register_options(conf)
    rpc.register_opts(conf)
    conf(argv, project='vfpool',
         version=version.version_info.version_string(),
         default_config_files=default_config_files)
    db_conf.set_connection_default(conf)
    if setup_logging:
        logging.setup(conf, 'vfpool')
    return conf
