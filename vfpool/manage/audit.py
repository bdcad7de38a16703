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

"""``vfpool-manage audit``: compare the inventory with the hypervisors.

Three kinds of disagreement are looked for:

* claims nothing will clear: a claimed VF whose migration is over or
  unknown (``orphan_claim``), or in progress past its lease
  (``lapsed_claim``: no vfpool-server is reaping), and allocations still
  marked with a migration that is over (``stale_migration_mark``);
* on hosts given with ``--libvirt-uri HOST=URI``, VFs that a running
  domain passes through while nothing in vfpool says that domain holds
  them (``attached_without_allocation``; a domain's UUID is its
  instance UUID; a ``reserved`` VF is the operator's to use and is never
  reported);
* allocated VFs that their instance's domain does not use although the
  inventory does not record them as detached
  (``allocation_not_attached``), or the reverse (``attach_state_stale``).
  Source VFs of a migration in flight are skipped: the compute plugin
  detaches them on purpose.

``--fix`` only does what cannot hurt a guest: it frees leaked claims
(lapsed ones by expiring their migration, as the reaper would), clears
stale marks, records attach states as they really are and reserves a
free VF that a guest uses so that it is not handed out twice.  Every fix
is a compare-and-swap on the VF as the audit saw it.
"""

from oslo_config import cfg

from vfpool.manage import cli
from vfpool.manage import domains
from vfpool import notifications
from vfpool.objects import admin
from vfpool.objects import host as host_obj
from vfpool.objects import migration as migration_obj
from vfpool.objects import migration_view
from vfpool import states
from vfpool import validation as v

ORPHAN_CLAIM = admin.ORPHAN_CLAIM
LAPSED_CLAIM = admin.LAPSED_CLAIM
STALE_MARK = admin.STALE_MARK
UNALLOCATED = 'attached_without_allocation'
NOT_ATTACHED = 'allocation_not_attached'
STALE_ATTACH_STATE = 'attach_state_stale'

_RECORDED_OFF = (states.DETACHED, states.ATTACH_FAILED)
_COLUMNS = ['Problem', 'Host', 'Address', 'State', 'Instance', 'Migration',
            'Domains', 'Detail', 'Fix']


def _problem(kind: str, vf: dict, detail: str, fix: str | None,
             domain_uuids=()) -> dict:
    return {'problem': kind, 'host': vf['host'], 'address': vf['address'],
            'state': vf['state'], 'instance_uuid': vf['instance_uuid'],
            'migration_uuid': vf['migration_uuid'],
            'domains': sorted(domain_uuids), 'detail': detail, 'fix': fix,
            'fixed': False, 'generation': vf['generation']}


def _leak_problem(vf: dict) -> dict:
    migration = vf['migration_uuid']
    over = vf['migration_state'] or 'unknown'
    if vf['leak'] == ORPHAN_CLAIM:
        return _problem(ORPHAN_CLAIM, vf, 'claimed for migration %s, which '
                        'is %s' % (migration, over), 'free the claim')
    if vf['leak'] == LAPSED_CLAIM:
        return _problem(LAPSED_CLAIM, vf, 'the lease of migration %s lapsed '
                        'at %s and no server expired it'
                        % (migration, vf['lease_expires_at']),
                        'expire migration %s' % migration)
    return _problem(STALE_MARK, vf, 'still marked with migration %s, which '
                    'is %s' % (migration, over), 'clear the migration mark')


def _held_by(vf: dict, domain: str) -> bool:
    owned = {vf['state'], vf['prior_state']} & {states.ALLOCATED,
                                                states.CLAIMED}
    return vf['instance_uuid'] == domain and bool(owned)


def _attachment_problems(vfs: list[dict], guests: dict) -> list[dict]:
    users: dict = {}
    for domain, addresses in guests.items():
        for address in addresses:
            users.setdefault(address, set()).add(domain)
    problems = []
    for vf in vfs:
        using = users.get(vf['address'], set())
        strangers = {d for d in using if not _held_by(vf, d)}
        if strangers and vf['state'] != states.RESERVED:
            free = vf['state'] == states.AVAILABLE
            holder = ('it is free' if free else 'it is %s for %s'
                      % (vf['state'], vf['instance_uuid'] or 'nobody'))
            problems.append(_problem(
                UNALLOCATED, vf, 'passed through to domain(s) %s but %s'
                % (', '.join(sorted(strangers)), holder),
                'reserve the VF' if free else None, strangers))
        if (vf['state'] != states.ALLOCATED
                or vf['migration_state'] in states.IN_FLIGHT):
            continue
        owner = vf['instance_uuid']
        plugged = owner in using
        recorded_off = vf['attach_state'] in _RECORDED_OFF
        if not plugged and not recorded_off:
            where = ('is not running on %s' % vf['host']
                     if owner not in guests else 'runs without it')
            problems.append(_problem(
                NOT_ATTACHED, vf, 'allocated to %s, whose domain %s'
                % (owner, where), 'record attach_state=detached'))
        elif plugged and recorded_off:
            problems.append(_problem(
                STALE_ATTACH_STATE, vf, 'attached to its domain but '
                'recorded as %s' % vf['attach_state'],
                'record attach_state=attached', {owner}))
    return problems


def inspect(context, guests_by_host: dict) -> list[dict]:
    """Every problem found; ``guests_by_host`` is what libvirt said."""
    problems = [_leak_problem(vf) for vf in admin.leaks(context)]
    for host in sorted(guests_by_host):
        problems += _attachment_problems(
            admin.list_vfs(context, host=host), guests_by_host[host])
    return problems


def _expire_lapsed(conf, context, problems: list[dict]) -> None:
    reaped = migration_obj.reap_expired(context)
    notifier = cli.notifier(conf)
    for migration_uuid, freed in reaped:
        notifier.emit(context, notifications.MIGRATION_EXPIRE,
                      migration_uuid=migration_uuid, freed=freed)
    done = {migration_uuid for migration_uuid, _freed in reaped}
    for problem in problems:
        uuid = problem['migration_uuid']
        problem['fixed'] = uuid in done or migration_view.get(
            context, uuid)['state'] != states.IN_PROGRESS


def _reservation_reason(problem: dict) -> str:
    return ('passed through to domain %s without an allocation (found by '
            'vfpool-manage audit)' % ', '.join(problem['domains']))[:255]


_FIXES = {
    ORPHAN_CLAIM: lambda ctx, p, gen: admin.free_claim(
        ctx, p['host'], p['address'], gen),
    STALE_MARK: lambda ctx, p, gen: admin.clear_mark(
        ctx, p['host'], p['address'], gen),
    UNALLOCATED: lambda ctx, p, gen: admin.reserve_seen(
        ctx, p['host'], p['address'], gen, _reservation_reason(p)),
    NOT_ATTACHED: lambda ctx, p, gen: admin.set_attach_state(
        ctx, p['host'], p['address'], gen, states.DETACHED),
    STALE_ATTACH_STATE: lambda ctx, p, gen: admin.set_attach_state(
        ctx, p['host'], p['address'], gen, states.ATTACHED),
}


def repair(conf: cfg.ConfigOpts, context, problems: list[dict]) -> None:
    """Apply the fix of each problem that has one; set ``fixed``."""
    lapsed = [p for p in problems if p['problem'] == LAPSED_CLAIM]
    if lapsed:
        _expire_lapsed(conf, context, lapsed)
    # Each fix bumps the VF's generation by one; a second fix of the same
    # VF must expect that, and anything else means someone else changed it.
    generations: dict = {}
    for problem in problems:
        fix = _FIXES.get(problem['problem'])
        if fix is None or problem['fix'] is None:
            continue
        key = (problem['host'], problem['address'])
        generation = generations.get(key, problem['generation'])
        problem['fixed'] = fix(context, problem, generation)
        if problem['fixed']:
            generations[key] = generation + 1


def _libvirt_uris(values: list[str]) -> dict:
    uris = {}
    for value in values:
        host, sep, uri = value.partition('=')
        if not sep or not uri:
            raise cli.CommandError('--libvirt-uri wants HOST=URI, not %r'
                                   % value, cli.EXIT_USAGE)
        host = v.name('--libvirt-uri host', host)
        if host in uris:
            raise cli.CommandError('--libvirt-uri given twice for host %s'
                                   % host, cli.EXIT_USAGE)
        uris[host] = uri
    return uris


def _show(conf: cfg.ConfigOpts, report: dict) -> None:
    problems = report['problems']
    columns = _COLUMNS + (['Fixed'] if conf.command.fix else [])
    rows = [[p['problem'], p['host'], p['address'], p['state'],
             p['instance_uuid'], p['migration_uuid'],
             '\n'.join(p['domains']) or None, p['detail'], p['fix']]
            + ([p['fixed']] if conf.command.fix else []) for p in problems]
    if conf.command.format != 'json' and report['unchecked_hosts']:
        cli.note('Attachments not checked on host(s) without --libvirt-uri: '
                 '%s' % ', '.join(report['unchecked_hosts']))
    cli.show(conf, report, cli.table(columns, rows) if problems
             else 'No problems found.')


def audit(conf: cfg.ConfigOpts) -> int:
    uris = _libvirt_uris(conf.command.libvirt_uri or [])
    cli.configure_db(conf)
    context = cli.admin_context()
    hosts = {h['name'] for h in host_obj.list_hosts(context)}
    for host in uris:
        if host not in hosts:
            raise cli.CommandError('--libvirt-uri: host %s is not known to '
                                   'vfpool' % host, cli.EXIT_CONFLICT)
    guests = {}
    for host, uri in sorted(uris.items()):
        try:
            guests[host] = domains.running_guests(uri)
        except domains.LibvirtError as e:
            raise cli.CommandError('host %s: %s' % (host, e), cli.EXIT_USAGE)
    problems = inspect(context, guests)
    fixable = [p for p in problems if p['fix']]
    if conf.command.fix and fixable:
        cli.confirm(conf, ['Repair %d problem(s):' % len(fixable)] + [
            '  %s %s: %s' % (p['host'], p['address'], p['fix'])
            for p in fixable])
        repair(conf, context, fixable)
    _show(conf, {'problems': problems, 'checked_hosts': sorted(uris),
                 'unchecked_hosts': sorted(hosts - set(uris))})
    if any(not p['fixed'] for p in problems):
        return cli.EXIT_PROBLEMS
    return cli.EXIT_OK


def add_parsers(subparsers) -> None:
    parser = subparsers.add_parser(
        'audit', help='Compare the inventory with what guests really use.',
        description='Find leaked claims, VFs that running guests use '
                    'without an allocation and allocations their guest '
                    'does not use; with --fix, repair what is safe. Exit '
                    'code 1 when problems remain.')
    cli.one_line_errors(parser)
    parser.set_defaults(func=audit)
    parser.add_argument(
        '--libvirt-uri', action='append', metavar='HOST=URI',
        help='Read the running domains of HOST at this libvirt URI (read '
             'only), e.g. compute1=qemu+ssh://compute1/system. Repeat for '
             'every host to check; other hosts get only the claim checks.')
    parser.add_argument('--fix', action='store_true',
                        help='Repair what is safe, after a confirmation.')
    parser.add_argument('--yes', action='store_true',
                        help='With --fix, do not ask for confirmation.')
    parser.add_argument('--format', choices=('table', 'json'),
                        default='table', help='table or json.')
