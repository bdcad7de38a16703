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

"""``vfpool-manage host``: see hosts and take them out of service."""

from oslo_config import cfg

from vfpool.manage import cli
from vfpool.objects import host as host_obj
from vfpool import states
from vfpool import validation as v

_LIST_COLUMNS = ['Host', 'Disabled', 'Reason', 'Last report', 'PFs',
                 'VFs'] + [s.capitalize() for s in states.VF_STATES]


def _totals(summary: dict) -> dict:
    totals = {state: 0 for state in states.VF_STATES}
    for counts in summary['physical_networks'].values():
        for state, count in counts.items():
            totals[state] += count
    return totals


def _row(summary: dict) -> list:
    totals = _totals(summary)
    return [summary['name'], summary['disabled'],
            summary['disabled_reason'], summary['last_report_at'],
            summary['pf_count'], summary['vf_count']] + [
        totals[state] for state in states.VF_STATES]


def _networks(summary: dict):
    return cli.table(
        ['Physical network'] + list(states.VF_STATES),
        [[network] + [counts[s] for s in states.VF_STATES]
         for network, counts in sorted(
             summary['physical_networks'].items())])


def _show_host(conf: cfg.ConfigOpts, summary: dict) -> None:
    cli.show(conf, summary,
             cli.properties(summary, ['name', 'disabled', 'disabled_reason',
                                      'last_report_at', 'pf_count',
                                      'vf_count']),
             _networks(summary))


def _host(conf: cfg.ConfigOpts) -> str:
    return cli.check(v.name, 'host', conf.command.host_name)


def list_hosts(conf: cfg.ConfigOpts) -> int:
    cli.configure_db(conf)
    hosts = host_obj.list_hosts(cli.admin_context())
    cli.show(conf, hosts, cli.table(_LIST_COLUMNS,
                                    [_row(h) for h in hosts]))
    return cli.EXIT_OK


def show_host(conf: cfg.ConfigOpts) -> int:
    host = _host(conf)
    cli.configure_db(conf)
    _show_host(conf, host_obj.get_host(cli.admin_context(), host))
    return cli.EXIT_OK


def disable_host(conf: cfg.ConfigOpts) -> int:
    host = _host(conf)
    reason = cli.check(v.name, 'reason', conf.command.reason)
    cli.configure_db(conf)
    context = cli.admin_context()
    summary = host_obj.get_host(context, host)
    owned = _totals(summary)
    cli.confirm(conf, [
        'Disable host %s%s: it will take no new allocation or migration '
        'claim; its %d allocated and %d claimed VF(s) stay as they are.'
        % (host, ' (%s)' % reason if reason else '',
           owned[states.ALLOCATED], owned[states.CLAIMED])])
    _show_host(conf, host_obj.set_disabled(context, host, True, reason))
    return cli.EXIT_OK


def enable_host(conf: cfg.ConfigOpts) -> int:
    host = _host(conf)
    cli.configure_db(conf)
    _show_host(conf, host_obj.set_disabled(cli.admin_context(), host, False))
    return cli.EXIT_OK


def add_parsers(subparsers) -> None:
    actions = cli.add_category(subparsers, 'host',
                               'Hosts whose VFs vfpool inventories.')
    cli.add_action(actions, 'list', list_hosts,
                   'List hosts with their VF counts by state.')
    parser = cli.add_action(actions, 'show', show_host,
                            'Show one host, per physical network.')
    parser.add_argument('host_name', metavar='HOST',
                        help='Host name, as its agent reports it.')
    parser = cli.add_action(
        actions, 'disable', disable_host, destructive=True,
        help='Stop new claims on a host (allocations stay).')
    parser.add_argument('host_name', metavar='HOST', help='Host name.')
    parser.add_argument('--reason', help='Why, for other operators.')
    parser = cli.add_action(actions, 'enable', enable_host,
                            'Let a disabled host take claims again.')
    parser.add_argument('host_name', metavar='HOST', help='Host name.')
