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

import re

from oslo_config import cfg
from oslo_log import log as logging

from vfpool import conf as vfpool_conf
from vfpool.conf import database as db_conf
from vfpool import exception
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
    check_values(conf)
    db_conf.set_connection_default(conf)
    if setup_logging:
        logging.setup(conf, 'vfpool')
    return conf


def check_values(conf: cfg.ConfigOpts) -> None:
    """Read every registered option once, so that a bad value fails now.

    oslo.config checks a value only when it is read: a typo in a rarely
    read option would otherwise surface mid-command, or hours into a
    service's life.  Raises :class:`~vfpool.exception.ConfigInvalid`.
    """
    for name in list(conf):
        group = _read(conf, name, None)
        if isinstance(group, cfg.ConfigOpts.GroupAttr):
            for opt in list(group):
                _read(conf, opt, name)


# oslo.config's message: "Value for option NAME from LocationInfo(...,
# detail='FILE') is not valid: REASON".
_BAD_VALUE = re.compile(r"detail='(?P<file>[^']*)'\) is not valid: "
                        r"(?P<reason>.*)$", re.DOTALL)


def _read(conf: cfg.ConfigOpts, name: str, group: str | None) -> object:
    try:
        return conf[group][name] if group else conf[name]
    except cfg.ConfigFileValueError as exc:
        found = _BAD_VALUE.search(str(exc))
        raise exception.ConfigInvalid(
            option='[%s] %s' % (group or 'DEFAULT', name),
            where=' in %s' % found['file'] if found else '',
            reason=found['reason'] if found else exc) from exc
