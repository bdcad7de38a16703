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

"""vfpool's configuration inside nova-compute.

nova-compute parses ``nova.conf`` into Nova's global ``CONF``, which has
groups of its own named like vfpool's (``[DEFAULT] transport_url``,
``[libvirt]``, ``[upgrade_levels]``).  The driver therefore reads none of
vfpool's options from ``nova.conf``: the one option it adds there,
``[vfpool] config_file``, names a vfpool configuration file (the one the
host's ``vfpool-agent`` reads), parsed into a ``ConfigOpts`` of its own.
That file gives the transport and RPC topic, ``[upgrade_levels] vfpool``,
``[migration]``, ``[libvirt]`` (detach timeouts) and ``[agent]
device_spec`` (which VFs vfpool manages here).

This module does not import Nova, so that it can be tested without it.
"""

from oslo_config import cfg

from vfpool import conf as vfpool_conf
from vfpool import config

DEFAULT_CONFIG_FILE = '/etc/vfpool/vfpool.conf'

nova_group = cfg.OptGroup(
    'vfpool', title='vfpool compute driver',
    help='Where the vfpool compute driver finds vfpool\'s own '
         'configuration. Every other vfpool option lives in that file, '
         'not in nova.conf.')

nova_opts = [
    cfg.StrOpt(
        'config_file',
        default=DEFAULT_CONFIG_FILE,
        help='vfpool configuration file the driver reads: transport_url '
             'and rpc_topic of the vfpool servers, [upgrade_levels] '
             'vfpool, [migration], [libvirt] detach timeouts and the '
             '[agent] device_spec of this host (use the file the host\'s '
             'vfpool-agent reads).'),
]


class ConfigError(Exception):
    """The vfpool configuration cannot serve this nova-compute."""


def register_nova_opts(conf: cfg.ConfigOpts) -> None:
    """Register ``[vfpool] config_file`` on Nova's ``CONF``."""
    conf.register_group(nova_group)
    conf.register_opts(nova_opts, group=nova_group)


def list_opts() -> list:
    """For oslo-config-generator: the option the driver adds to nova.conf."""
    return [(nova_group, nova_opts)]


def load(path: str) -> cfg.ConfigOpts:
    """Parse the vfpool configuration file ``path`` for the driver.

    Logging is Nova's: it is not set up again.  Raises ConfigError when
    the file cannot be read or parsed.
    """
    conf = vfpool_conf.new_conf()
    try:
        config.parse_args(['--config-file', path], conf=conf,
                          default_config_files=[], setup_logging=False)
    except (cfg.ConfigFilesNotFoundError, cfg.ConfigFileParseError,
            cfg.Error) as exc:
        raise ConfigError('cannot read the vfpool configuration file %s '
                          '([vfpool] config_file in nova.conf): %s'
                          % (path, exc))
    return conf


def check_host(conf: cfg.ConfigOpts, nova_host: str) -> None:
    """The driver speaks for Nova's host; vfpool must know it by that name.

    Nova names a live migration's hosts by their compute service host, and
    the driver passes those names to vfpool-server, where the host's agent
    reported its VFs under ``[DEFAULT] host``.  A different name set in the
    file would make every claim fail with ``HostNotFound``.
    """
    location = conf.get_location('host')
    explicit = (location is not None and
                location.location != cfg.Locations.opt_default)
    if explicit and conf.host != nova_host:
        raise ConfigError(
            'vfpool configuration file %s sets [DEFAULT] host = %s but '
            'this nova-compute is host %s: vfpool-agent must report the '
            'VFs of this host under the name Nova uses for it'
            % (conf.config_file[-1] if conf.config_file else '?',
               conf.host, nova_host))
