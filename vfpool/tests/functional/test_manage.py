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

"""vfpool-manage against real databases and libvirt's test driver."""

import json
import os
import pty
import subprocess

from oslo_messaging.notify import _impl_test as test_notifications
import sqlalchemy as sa

from vfpool.cmd import manage
from vfpool.db import api as db_api
from vfpool.db import migration
from vfpool.db import models
from vfpool import exception
from vfpool.objects import admin
from vfpool.objects import allocation as allocation_obj
from vfpool.objects import host as host_obj
from vfpool.objects import migration as migration_obj
from vfpool.objects import migration_view
from vfpool.tests import api_cases
from vfpool.tests.functional import operator_base as ob
from vfpool.tests import inventory as inv

INSTANCE_3 = '3c3c3c3c-3c3c-4c3c-8c3c-3c3c3c3c3c3c'
MIGRATION_2 = '4d4d4d4d-4d4d-4d4d-8d4d-4d4d4d4d4d4d'

_DOMAIN = '''<domain type='test'>
  <name>%(name)s</name><uuid>%(uuid)s</uuid><memory>131072</memory>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>%(devices)s</devices>
</domain>'''
_INTERFACE = '''<interface type='hostdev' managed='yes'>
  <mac address='fa:16:3e:aa:00:%02x'/>
  <source><address type='pci' domain='0x%s' bus='0x%s' slot='0x%s'
           function='0x%s'/></source>
</interface>'''
_HOSTDEV = '''<hostdev mode='subsystem' type='pci' managed='yes'>
  <source><address domain='0x%s' bus='0x%s' slot='0x%s' function='0x%s'/>
  </source>
</hostdev>'''


def _parts(address: str) -> tuple:
    domain, bus, rest = address.split(':')
    slot, function = rest.split('.')
    return domain, bus, slot, function


def _domain(uuid: str, interfaces=(), hostdevs=()) -> str:
    devices = [_INTERFACE % ((i,) + _parts(a))
               for i, a in enumerate(interfaces)]
    devices += [_HOSTDEV % _parts(a) for a in hostdevs]
    return _DOMAIN % {'name': 'instance-%s' % uuid[:8], 'uuid': uuid,
                      'devices': ''.join(devices)}


class ManageTestCase(ob.OperatorTestCase):

    def manage(self, *args, stdin=None) -> tuple[int, str, str]:
        return self.run_main(manage.main, args, stdin=stdin)

    def manage_json(self, *args, code: int = 0):
        rc, out, err = self.manage(*(args + ('--format', 'json')))
        self.assertEqual(code, rc, 'stdout: %s\nstderr: %s' % (out, err))
        return json.loads(out)

    def assertFails(self, code: int, message: str, *args, stdin=None):
        """Exit ``code``, ``message`` on stderr, nothing on stdout."""
        rc, out, err = self.manage(*args, stdin=stdin)
        self.assertEqual(code, rc, 'stdout: %s\nstderr: %s' % (out, err))
        self.assertEqual('', out)
        self.assertIn(message, err)
        return err

    def seed(self) -> None:
        """host-a: 4 VFs on physnet1 and 2 on physnet2; host-b: 4 VFs.

        INSTANCE holds host-a's 0000:05:10.0 and is migrating to host-b,
        where MIGRATION claims 0000:81:10.0.
        """
        self.report('host-a', inv.pf(0x05, 4), inv.pf(0x06, 2, 'physnet2'))
        self.report('host-b', inv.pf(0x81, 4))
        self.allocate(ob.INSTANCE, 'host-a')
        self.prepare(ob.MIGRATION, ob.INSTANCE, 'host-a', 'host-b')

    def vf(self, host: str, address: str) -> dict:
        return admin.get_vf(self.context, host, address)

    def migration_state(self, migration_uuid: str) -> str:
        return migration_view.get(self.context, migration_uuid)['state']


class TestDb(ManageTestCase):

    sync = False

    def test_sync_then_version(self):
        rc, out, _err = self.manage('db', 'version')
        self.assertEqual((0, 'None\n'), (rc, out))
        rc, out, _err = self.manage('db', 'sync')
        self.assertEqual(0, rc)
        self.assertIn(migration.head(), out)
        rc, out, _err = self.manage('db', 'version')
        self.assertEqual((0, migration.head() + '\n'), (rc, out))
        self.assertEqual(migration.head(),
                         migration.version(engine=db_api.get_engine()))


class TestHost(ManageTestCase):

    def setUp(self):
        super().setUp()
        self.seed()

    def test_list_json_counts_by_state(self):
        hosts = self.manage_json('host', 'list')
        self.assertEqual(['host-a', 'host-b'], [h['name'] for h in hosts])
        a, b = hosts
        self.assertEqual(6, a['vf_count'])
        self.assertEqual(1, a['physical_networks']['physnet1']['allocated'])
        self.assertEqual(3, a['physical_networks']['physnet1']['available'])
        self.assertEqual(2, a['physical_networks']['physnet2']['available'])
        self.assertEqual(1, b['physical_networks']['physnet1']['claimed'])
        self.assertFalse(a['disabled'])

    def test_list_table(self):
        rc, out, err = self.manage('host', 'list')
        self.assertEqual((0, ''), (rc, err))
        row = [line for line in out.splitlines() if 'host-a' in line][0]
        cells = [c.strip() for c in row.strip('|').split('|')]
        # Host, Disabled, Reason, Last report, PFs, VFs, then by state.
        self.assertEqual(['host-a', 'no', '-'], cells[:3])
        self.assertEqual(['2', '6', '5', '0', '1', '0', '0'], cells[4:])

    def test_show(self):
        host = self.manage_json('host', 'show', 'host-b')
        self.assertEqual('host-b', host['name'])
        self.assertEqual(1, host['pf_count'])
        self.assertIsNotNone(host['last_report_at'])
        rc, out, _err = self.manage('host', 'show', 'host-a')
        self.assertEqual(0, rc)
        self.assertIn('physnet2', out)

    def test_show_unknown_host(self):
        self.assertFails(3, 'Host nowhere is not known', 'host', 'show',
                         'nowhere')

    def test_missing_argument_is_a_usage_error(self):
        err = self.assertFails(2, 'required', 'host', 'show')
        self.assertEqual(1, len(err.splitlines()))

    def test_disable_refused_without_terminal(self):
        err = self.assertFails(2, 'pass --yes', 'host', 'disable', 'host-a',
                               '--reason', 'maintenance')
        self.assertIn('Disable host host-a (maintenance)', err)
        self.assertFalse(host_obj.get_host(self.context,
                                           'host-a')['disabled'])

    def test_disable_declined_at_prompt(self):
        self.assertFails(2, 'not confirmed', 'host', 'disable', 'host-a',
                         stdin=ob.TtyInput('n\n'))
        self.assertFalse(host_obj.get_host(self.context,
                                           'host-a')['disabled'])

    def test_disable_confirmed_at_prompt_stops_claims(self):
        rc, out, err = self.manage('host', 'disable', 'host-a', '--reason',
                                   'fan failure', stdin=ob.TtyInput('y\n'))
        self.assertEqual(0, rc, err)
        self.assertIn('Proceed? [y/N]', err)
        self.assertIn('fan failure', out)
        self.assertRaises(exception.HostDisabled, self.allocate,
                          ob.INSTANCE_2, 'host-a')
        # What the host already gave out stays.
        self.assertEqual(models.ALLOCATED,
                         self.vf('host-a', '0000:05:10.0')['state'])

    def test_disable_then_enable(self):
        host = self.manage_json('host', 'disable', 'host-b', '--yes',
                                '--reason', 'drain')
        self.assertEqual((True, 'drain'),
                         (host['disabled'], host['disabled_reason']))
        self.allocate(ob.INSTANCE_2, 'host-a')
        self.assertRaises(exception.HostDisabled, migration_obj.prepare,
                          self.context, ob.STRANGER, ob.INSTANCE_2,
                          'host-a', 'host-b', 600)
        allocation_obj.release(self.context, ob.INSTANCE_2)
        host = self.manage_json('host', 'enable', 'host-b')
        self.assertEqual((False, None),
                         (host['disabled'], host['disabled_reason']))
        # A new request: a released request id stays released.
        self.assertEqual(1, len(self.allocate(ob.INSTANCE_2, 'host-b',
                                              request_id='req-again')))

    def test_disable_unknown_host_asks_nothing(self):
        err = self.assertFails(3, 'Host nowhere is not known', 'host',
                               'disable', 'nowhere', '--yes')
        self.assertNotIn('Disable', err)


class TestVf(ManageTestCase):

    def setUp(self):
        super().setUp()
        self.seed()

    def test_list_filters(self):
        vfs = self.manage_json('vf', 'list')
        self.assertEqual(10, len(vfs))
        vfs = self.manage_json('vf', 'list', '--host', 'host-a')
        self.assertEqual(6, len(vfs))
        self.assertEqual({'host-a'}, {vf['host'] for vf in vfs})
        vfs = self.manage_json('vf', 'list', '--physical-network',
                               'physnet2')
        self.assertEqual(['0000:06:10.0', '0000:06:10.1'],
                         [vf['address'] for vf in vfs])
        vfs = self.manage_json('vf', 'list', '--state', 'claimed')
        self.assertEqual([('host-b', '0000:81:10.0', ob.MIGRATION)],
                         [(vf['host'], vf['address'], vf['migration_uuid'])
                          for vf in vfs])
        self.assertEqual('in_progress', vfs[0]['migration_state'])
        vfs = self.manage_json('vf', 'list', '--instance', ob.INSTANCE)
        self.assertEqual({('host-a', 'allocated'), ('host-b', 'claimed')},
                         {(vf['host'], vf['state']) for vf in vfs})
        vfs = self.manage_json('vf', 'list', '--host', 'host-a', '--state',
                               'claimed')
        self.assertEqual([], vfs)

    def test_list_table(self):
        rc, out, _err = self.manage('vf', 'list', '--host', 'host-b')
        self.assertEqual(0, rc)
        self.assertIn('0000:81:10.3', out)
        self.assertIn(ob.MIGRATION, out)
        self.assertNotIn('0000:05:10.0', out)

    def test_list_bad_filters(self):
        self.assertFails(3, 'Host nowhere is not known', 'vf', 'list',
                         '--host', 'nowhere')
        self.assertFails(2, 'invalid choice', 'vf', 'list', '--state',
                         'broken')
        self.assertFails(2, 'is not a UUID', 'vf', 'list', '--instance',
                         'not-a-uuid')

    def test_show(self):
        vf = self.manage_json('vf', 'show', 'host-a', '0000:05:10.0')
        self.assertEqual(('allocated', ob.INSTANCE, 'fa:16:3e:00:00:00', 100,
                          '0000:05:00.0'),
                         (vf['state'], vf['instance_uuid'], vf['mac'],
                          vf['vlan'], vf['pf_address']))
        # Upper case is accepted and made canonical.
        vf = self.manage_json('vf', 'show', 'host-b', '0000:81:10.0'.upper())
        self.assertEqual('claimed', vf['state'])

    def test_show_errors(self):
        self.assertFails(2, 'is not a PCI address', 'vf', 'show', 'host-a',
                         '05:10.0')
        self.assertFails(3, 'VF 0000:05:1f.7 on host host-a', 'vf', 'show',
                         'host-a', '0000:05:1f.7')
        self.assertFails(3, 'Host nowhere', 'vf', 'show', 'nowhere',
                         '0000:05:10.0')

    def test_reserve_needs_confirmation(self):
        self.assertFails(2, 'pass --yes', 'vf', 'reserve', 'host-a',
                         '0000:05:10.1')
        self.assertEqual('available',
                         self.vf('host-a', '0000:05:10.1')['state'])

    def test_reserve_and_unreserve(self):
        vf = self.manage_json('vf', 'reserve', 'host-a', '0000:05:10.1',
                              '--reason', 'lab use', '--yes')
        self.assertEqual(('reserved', 'lab use'),
                         (vf['state'], vf['reserved_reason']))
        for address in ('0000:05:10.2', '0000:05:10.3'):
            self.manage_json('vf', 'reserve', 'host-a', address, '--yes')
        # Nothing is left on physnet1 for a claim.
        self.assertRaises(exception.NoAvailableVF, self.allocate,
                          ob.INSTANCE_2, 'host-a')
        vf = self.manage_json('vf', 'unreserve', 'host-a', '0000:05:10.1')
        self.assertEqual(('available', None),
                         (vf['state'], vf['reserved_reason']))
        self.assertEqual('0000:05:10.1',
                         self.allocate(ob.INSTANCE_2, 'host-a')[0]['address'])

    def test_reserve_conflicts(self):
        self.assertFails(3, 'only an available VF can be reserved', 'vf',
                         'reserve', 'host-a', '0000:05:10.0', '--yes')
        self.assertEqual('allocated',
                         self.vf('host-a', '0000:05:10.0')['state'])
        self.manage_json('vf', 'reserve', 'host-a', '0000:05:10.1', '--yes')
        self.assertFails(3, 'only an available VF can be reserved', 'vf',
                         'reserve', 'host-a', '0000:05:10.1', '--yes')

    def test_unreserve_conflicts(self):
        self.assertFails(3, 'only a reserved VF can be unreserved', 'vf',
                         'unreserve', 'host-b', '0000:81:10.0')
        self.assertEqual('claimed', self.vf('host-b', '0000:81:10.0')['state'])
        self.assertFails(3, 'is available', 'vf', 'unreserve', 'host-a',
                         '0000:05:10.1')

    def test_reserve_is_compare_and_swap(self):
        # What a race past the command's own check meets in the database.
        self.assertRaises(exception.VFStateConflict, admin.reserve,
                          self.context, 'host-a', '0000:05:10.0', 'late')
        vf = self.vf('host-a', '0000:05:10.0')
        self.assertEqual(('allocated', None, ob.INSTANCE),
                         (vf['state'], vf['reserved_reason'],
                          vf['instance_uuid']))
        self.assertRaises(exception.VFStateConflict, admin.unreserve,
                          self.context, 'host-b', '0000:81:10.0')
        self.assertEqual('claimed', self.vf('host-b', '0000:81:10.0')['state'])

    def test_reserve_errors(self):
        self.assertFails(2, 'is not a PCI address', 'vf', 'reserve',
                         'host-a', '0000:05:10', '--yes')
        self.assertFails(3, 'could not be found', 'vf', 'reserve', 'host-a',
                         '0000:05:1f.0', '--yes')


class TestMigration(ManageTestCase):

    def setUp(self):
        super().setUp()
        self.seed()

    def test_list(self):
        self.allocate(ob.INSTANCE_2, 'host-b')
        self.prepare(ob.STRANGER, ob.INSTANCE_2, 'host-b', 'host-a')
        migration_obj.abort(self.context, ob.STRANGER)
        found = self.manage_json('migration', 'list')
        self.assertEqual([ob.MIGRATION, ob.STRANGER],
                         [m['uuid'] for m in found])
        first = found[0]
        self.assertEqual(('host-a', 'host-b', 'in_progress', False),
                         (first['source_host'], first['dest_host'],
                          first['state'], first['stalled']))
        self.assertEqual([('0000:05:10.0', '0000:81:10.0')],
                         [(p['source']['address'], p['dest']['address'])
                          for p in first['vfs']])
        found = self.manage_json('migration', 'list', '--state', 'aborted')
        self.assertEqual([ob.STRANGER], [m['uuid'] for m in found])
        self.report('host-c', inv.pf(0x07, 1))
        self.assertEqual([], self.manage_json('migration', 'list', '--host',
                                              'host-c'))
        rc, out, _err = self.manage('migration', 'list')
        self.assertEqual(0, rc)
        self.assertIn('0000:05:10.0 -> 0000:81:10.0', out)

    def test_list_errors(self):
        self.assertFails(2, 'invalid choice', 'migration', 'list',
                         '--state', 'running')
        self.assertFails(3, 'Host nowhere', 'migration', 'list', '--host',
                         'nowhere')

    def test_abort_refused_without_yes(self):
        err = self.assertFails(2, 'pass --yes', 'migration', 'abort',
                               ob.MIGRATION)
        self.assertIn('free its 1 destination claim(s)', err)
        self.assertEqual('in_progress', migration_view.get(
            self.context, ob.MIGRATION)['state'])

    def test_abort(self):
        result = self.manage_json('migration', 'abort', ob.MIGRATION,
                                  '--yes')
        self.assertEqual({'migration_uuid': ob.MIGRATION, 'freed': 1},
                         result)
        self.assertEqual('aborted', migration_view.get(
            self.context, ob.MIGRATION)['state'])
        self.assertEqual('available',
                         self.vf('host-b', '0000:81:10.0')['state'])
        source = self.vf('host-a', '0000:05:10.0')
        self.assertEqual(('allocated', ob.INSTANCE, None),
                         (source['state'], source['instance_uuid'],
                          source['migration_uuid']))
        # Again: nothing to do, no prompt needed.
        rc, out, err = self.manage('migration', 'abort', ob.MIGRATION)
        self.assertEqual((0, 'Freed 0 claim(s).\n'), (rc, out))
        self.assertIn('already aborted', err)

    def test_abort_notifies(self):
        # oslo.messaging's in-memory "test" notification driver.
        self.configure('DEFAULT', transport_url='fake:/')
        self.configure('notifications', enabled='true')
        self.configure('oslo_messaging_notifications', driver='test')
        test_notifications.reset()
        self.addCleanup(test_notifications.reset)
        self.manage_json('migration', 'abort', ob.MIGRATION, '--yes')
        sent = [(message['event_type'], message['payload'], priority)
                for _ctxt, message, priority, _retry
                in test_notifications.NOTIFICATIONS]
        self.assertEqual([('vfpool.migration.abort', {
            'vfpool_object.name': 'MigrationPayload',
            'vfpool_object.namespace': 'vfpool',
            'vfpool_object.version': '1.0',
            'vfpool_object.data': {'migration_uuid': ob.MIGRATION,
                                   'freed': 1}}, 'INFO')], sent)
        self.assertTrue(test_notifications.NOTIFICATIONS[0][1][
            'publisher_id'].startswith('vfpool-manage:'))

    def stall(self) -> None:
        """MIGRATION moving with a lapsed lease: its compute went quiet."""
        migration_obj.begin(self.context, ob.MIGRATION, 600)
        api_cases.lapse(db_api.get_engine(), ob.MIGRATION)

    def test_list_shows_stalled_migrations(self):
        self.allocate(ob.INSTANCE_2, 'host-b')
        self.prepare(ob.STRANGER, ob.INSTANCE_2, 'host-b', 'host-a')
        migration_obj.begin(self.context, ob.STRANGER, 600)
        self.stall()
        found = self.manage_json('migration', 'list')
        self.assertEqual([(ob.MIGRATION, 'moving', True),
                          (ob.STRANGER, 'moving', False)],
                         [(m['uuid'], m['state'], m['stalled'])
                          for m in found])
        self.assertEqual([ob.MIGRATION], [m['uuid'] for m in self.manage_json(
            'migration', 'list', '--stalled')])
        rc, out, _err = self.manage('migration', 'list', '--stalled')
        self.assertEqual(0, rc)
        self.assertIn('Stalled', out)
        self.assertIn(ob.MIGRATION, out)
        self.assertNotIn(ob.STRANGER, out)
        # Nothing reaps it.
        self.assertEqual([], migration_obj.reap_expired(self.context))

    def test_abort_of_a_stalled_migration_warns(self):
        self.stall()
        err = self.assertFails(2, 'pass --yes', 'migration', 'abort',
                               ob.MIGRATION)
        self.assertIn('Only do this if the guest runs on host-a', err)
        result = self.manage_json('migration', 'abort', ob.MIGRATION,
                                  '--yes')
        self.assertEqual(1, result['freed'])
        self.assertEqual(('allocated', None), (
            self.vf('host-a', '0000:05:10.0')['state'],
            self.vf('host-a', '0000:05:10.0')['migration_uuid']))

    def test_complete_refused_without_yes(self):
        self.stall()
        err = self.assertFails(2, 'pass --yes', 'migration', 'complete',
                               ob.MIGRATION)
        self.assertIn('Only do this if the guest runs on host-b', err)
        self.assertIn('its VFs on host-a are freed', err)
        self.assertEqual('moving', self.migration_state(ob.MIGRATION))

    def test_complete_finishes_a_stalled_migration_and_notifies(self):
        self.configure('DEFAULT', transport_url='fake:/')
        self.configure('notifications', enabled='true')
        self.configure('oslo_messaging_notifications', driver='test')
        test_notifications.reset()
        self.addCleanup(test_notifications.reset)
        self.stall()
        result = self.manage_json('migration', 'complete', ob.MIGRATION,
                                  '--yes')
        self.assertEqual(ob.MIGRATION, result['migration_uuid'])
        self.assertEqual(['0000:81:10.0'],
                         [a['address'] for a in result['allocations']])
        self.assertEqual('completed', self.migration_state(ob.MIGRATION))
        self.assertEqual('available',
                         self.vf('host-a', '0000:05:10.0')['state'])
        self.assertEqual(('allocated', ob.INSTANCE),
                         (self.vf('host-b', '0000:81:10.0')['state'],
                          self.vf('host-b', '0000:81:10.0')['instance_uuid']))
        sent = [(message['event_type'], priority) for _ctxt, message,
                priority, _retry in test_notifications.NOTIFICATIONS]
        self.assertEqual([('vfpool.migration.complete', 'INFO')], sent)
        # Again: nothing to do, no prompt needed, same answer.
        again = self.manage_json('migration', 'complete', ob.MIGRATION)
        self.assertEqual(result, again)

    def test_complete_after_expiry_needs_reclaim_for_taken_vfs(self):
        api_cases.lapse(db_api.get_engine(), ob.MIGRATION)
        migration_obj.reap_expired(self.context)
        self.allocate(ob.INSTANCE_2, 'host-b')
        self.assertFails(3, 'no longer free', 'migration', 'complete',
                         ob.MIGRATION, '--yes')
        result = self.manage_json('migration', 'complete', ob.MIGRATION,
                                  '--reclaim', '--yes')
        self.assertEqual(['0000:81:10.1'],
                         [a['address'] for a in result['allocations']])

    def test_complete_errors(self):
        migration_obj.abort(self.context, ob.MIGRATION)
        self.assertFails(3, 'is aborted', 'migration', 'complete',
                         ob.MIGRATION, '--yes')
        self.assertFails(3, 'could not be found', 'migration', 'complete',
                         ob.STRANGER, '--yes')
        self.assertFails(2, 'is not a UUID', 'migration', 'complete', 'nope',
                         '--yes')

    def test_abort_errors(self):
        migration_obj.complete(self.context, ob.MIGRATION)
        self.assertFails(3, 'is completed', 'migration', 'abort',
                         ob.MIGRATION, '--yes')
        self.assertFails(3, 'could not be found', 'migration', 'abort',
                         ob.STRANGER, '--yes')
        self.assertFails(2, 'is not a UUID', 'migration', 'abort', 'nope',
                         '--yes')


class TestInstance(ManageTestCase):

    def setUp(self):
        super().setUp()
        self.seed()

    def test_show(self):
        shown = self.manage_json('instance', 'show', ob.INSTANCE)
        self.assertEqual(ob.INSTANCE, shown['instance_uuid'])
        self.assertEqual([('host-a', '0000:05:10.0', 'allocated')],
                         [(a['host'], a['address'], a['state'])
                          for a in shown['allocations']])
        self.assertEqual(ob.MIGRATION, shown['migration']['uuid'])
        self.assertEqual({'allocated', 'claimed'},
                         {vf['state'] for vf in shown['vfs']})
        rc, out, _err = self.manage('instance', 'show', ob.INSTANCE)
        self.assertEqual(0, rc)
        self.assertIn('Migration: %s in_progress' % ob.MIGRATION, out)

    def test_show_errors(self):
        self.assertFails(3, 'holds no VF', 'instance', 'show', ob.STRANGER)
        self.assertFails(2, 'is not a UUID', 'instance', 'show', '1234')

    def test_release_refused_without_yes(self):
        err = self.assertFails(2, 'pass --yes', 'instance', 'release',
                               ob.INSTANCE)
        self.assertIn('Release the 2 VF(s)', err)
        self.assertEqual(2, len(admin.list_vfs(
            self.context, instance_uuid=ob.INSTANCE)))

    def test_release(self):
        result = self.manage_json('instance', 'release', ob.INSTANCE,
                                  '--yes')
        self.assertEqual(2, result['freed'])
        self.assertEqual([], admin.list_vfs(self.context,
                                            instance_uuid=ob.INSTANCE))
        self.assertEqual('aborted', migration_view.get(
            self.context, ob.MIGRATION)['state'])
        # Idempotent.
        result = self.manage_json('instance', 'release', ob.INSTANCE)
        self.assertEqual(0, result['freed'])

    def test_release_on_one_host(self):
        self.allocate(ob.INSTANCE_2, 'host-a', count=2)
        self.allocate(INSTANCE_3, 'host-b')
        result = self.manage_json('instance', 'release', ob.INSTANCE_2,
                                  '--host', 'host-b', '--yes')
        self.assertEqual(0, result['freed'])
        result = self.manage_json('instance', 'release', ob.INSTANCE_2,
                                  '--host', 'host-a', '--yes')
        self.assertEqual(2, result['freed'])
        self.assertEqual(1, len(admin.list_vfs(self.context,
                                               instance_uuid=INSTANCE_3)))

    def test_release_errors(self):
        self.assertFails(3, 'Host nowhere', 'instance', 'release',
                         ob.INSTANCE, '--host', 'nowhere', '--yes')
        self.assertFails(2, 'is not a UUID', 'instance', 'release', 'x',
                         '--yes')


class TestAudit(ManageTestCase):
    """``audit`` against libvirt's test driver.

    host-a's guests: INSTANCE uses its 0000:05:10.0; INSTANCE_2's domain
    runs without its 0000:05:10.1; STRANGER (no allocation) passes
    through the free 0000:05:10.3 and a GPU vfpool does not manage.
    host-b's guest INSTANCE_3 uses 0000:81:10.0.  MIGRATION's lease
    lapsed an hour ago; MIGRATION_2 ended without its claims being freed.
    """

    def setUp(self):
        super().setUp()
        self.report('host-a', inv.pf(0x05, 4))
        self.report('host-b', inv.pf(0x81, 4))
        self.allocate(ob.INSTANCE, 'host-a')             # 05:10.0
        self.allocate(ob.INSTANCE_2, 'host-a')           # 05:10.1
        self.allocate(INSTANCE_3, 'host-b')              # 81:10.0

    def write_host(self, name: str, *domains: str) -> str:
        path = os.path.join(self.workdir, '%s.xml' % name)
        with open(path, 'w') as f:
            f.write('<node>%s</node>' % ''.join(domains))
        return '%s=test://%s' % (name, path)

    def healthy_hosts(self) -> list[str]:
        return ['--libvirt-uri', self.write_host(
                    'host-a', _domain(ob.INSTANCE, ['0000:05:10.0']),
                    _domain(ob.INSTANCE_2, ['0000:05:10.1'])),
                '--libvirt-uri', self.write_host(
                    'host-b', _domain(INSTANCE_3, hostdevs=['0000:81:10.0']),
                    _domain(ob.STRANGER, hostdevs=['0000:3b:00.0']))]

    def break_things(self) -> list[str]:
        self.prepare(ob.MIGRATION, ob.INSTANCE, 'host-a', 'host-b',
                     lease_seconds=1, ago=3600)          # claims 81:10.1
        self.prepare(MIGRATION_2, INSTANCE_3, 'host-b', 'host-a')  # 05:10.2
        # A crash that no code path produces: the migration ended but its
        # claim and its mark on the source stayed.
        with db_api.get_engine().begin() as conn:
            conn.execute(sa.update(models.Migration)
                         .where(models.Migration.uuid == MIGRATION_2)
                         .values(state=models.ABORTED,
                                 in_flight_instance_uuid=None))
        return ['--libvirt-uri', self.write_host(
                    'host-a', _domain(ob.INSTANCE, ['0000:05:10.0']),
                    _domain(ob.INSTANCE_2),
                    _domain(ob.STRANGER, hostdevs=['0000:05:10.3',
                                                   '0000:3b:00.0'])),
                '--libvirt-uri', self.write_host(
                    'host-b', _domain(INSTANCE_3, ['0000:81:10.0']))]

    @staticmethod
    def found(report: dict) -> set:
        return {(p['problem'], p['host'], p['address'])
                for p in report['problems']}

    def test_healthy(self):
        report = self.manage_json('audit', *self.healthy_hosts())
        self.assertEqual([], report['problems'])
        self.assertEqual(['host-a', 'host-b'], report['checked_hosts'])
        rc, out, err = self.manage('audit', *self.healthy_hosts())
        self.assertEqual((0, 'No problems found.\n', ''), (rc, out, err))

    def test_reserved_vf_in_use_is_not_a_problem(self):
        admin.reserve(self.context, 'host-a', '0000:05:10.3', 'lab')
        uris = self.healthy_hosts()
        uris[1] = self.write_host(
            'host-a', _domain(ob.INSTANCE, ['0000:05:10.0']),
            _domain(ob.INSTANCE_2, ['0000:05:10.1']),
            _domain(ob.STRANGER, ['0000:05:10.3']))
        self.assertEqual([], self.manage_json('audit', *uris)['problems'])

    EXPECTED = {
        ('lapsed_claim', 'host-b', '0000:81:10.1'),
        ('orphan_claim', 'host-a', '0000:05:10.2'),
        ('stale_migration_mark', 'host-b', '0000:81:10.0'),
        ('allocation_not_attached', 'host-a', '0000:05:10.1'),
        ('attached_without_allocation', 'host-a', '0000:05:10.3'),
    }

    def test_finds_problems(self):
        uris = self.break_things()
        report = self.manage_json('audit', *uris, code=1)
        self.assertEqual(self.EXPECTED, self.found(report))
        stranger = [p for p in report['problems']
                    if p['problem'] == 'attached_without_allocation'][0]
        self.assertEqual([ob.STRANGER], stranger['domains'])
        self.assertEqual('reserve the VF', stranger['fix'])
        self.assertFalse(any(p['fixed'] for p in report['problems']))
        rc, out, _err = self.manage('audit', *uris)
        self.assertEqual(1, rc)
        self.assertIn('lapsed_claim', out)

    def test_without_libvirt_only_claims_are_checked(self):
        self.break_things()
        report = self.manage_json('audit', code=1)
        self.assertEqual({p for p in self.EXPECTED if 'claim' in p[0]
                          or 'mark' in p[0]}, self.found(report))
        self.assertEqual(['host-a', 'host-b'], report['unchecked_hosts'])

    def test_fix_refused_without_yes_changes_nothing(self):
        uris = self.break_things()
        err = self.assertFails(2, 'pass --yes', 'audit', '--fix', *uris)
        self.assertIn('Repair 5 problem(s)', err)
        self.assertEqual(self.EXPECTED, self.found(
            self.manage_json('audit', *uris, code=1)))

    def test_fix(self):
        uris = self.break_things()
        report = self.manage_json('audit', '--fix', '--yes', *uris)
        self.assertEqual(self.EXPECTED, self.found(report))
        self.assertTrue(all(p['fixed'] for p in report['problems']))

        self.assertEqual('expired', migration_view.get(
            self.context, ob.MIGRATION)['state'])
        self.assertEqual('available',
                         self.vf('host-b', '0000:81:10.1')['state'])
        self.assertEqual('available',
                         self.vf('host-a', '0000:05:10.2')['state'])
        source = self.vf('host-b', '0000:81:10.0')
        self.assertEqual(('allocated', INSTANCE_3, None),
                         (source['state'], source['instance_uuid'],
                          source['migration_uuid']))
        self.assertEqual('detached',
                         self.vf('host-a', '0000:05:10.1')['attach_state'])
        held = self.vf('host-a', '0000:05:10.3')
        self.assertEqual('reserved', held['state'])
        self.assertIn(ob.STRANGER, held['reserved_reason'])
        # Without its stale mark, INSTANCE_3 can migrate again.
        self.prepare('5e5e5e5e-5e5e-4e5e-8e5e-5e5e5e5e5e5e', INSTANCE_3,
                     'host-b', 'host-a')

        self.assertEqual([], self.manage_json('audit', *uris)['problems'])

        # The guest gets its VF back by hand: the audit notices.
        uris[1] = self.write_host(
            'host-a', _domain(ob.INSTANCE, ['0000:05:10.0']),
            _domain(ob.INSTANCE_2, ['0000:05:10.1']),
            _domain(ob.STRANGER, hostdevs=['0000:05:10.3']))
        report = self.manage_json('audit', *uris, code=1)
        self.assertEqual({('attach_state_stale', 'host-a', '0000:05:10.1')},
                         self.found(report))
        report = self.manage_json('audit', '--fix', '--yes', *uris)
        self.assertEqual('attached',
                         self.vf('host-a', '0000:05:10.1')['attach_state'])

    def test_fix_confirmed_at_prompt(self):
        uris = self.break_things()
        rc, out, err = self.manage('audit', '--fix', *uris,
                                   stdin=ob.TtyInput('yes\n'))
        self.assertEqual(0, rc, err)
        self.assertIn('Proceed?', err)
        self.assertEqual([], self.manage_json('audit', *uris)['problems'])

    def test_bad_arguments(self):
        self.assertFails(2, 'wants HOST=URI', 'audit', '--libvirt-uri',
                         'host-a')
        self.assertFails(3, 'host nowhere is not known', 'audit',
                         '--libvirt-uri', 'nowhere=test:///default')
        self.assertFails(2, 'host host-a: cannot connect', 'audit',
                         '--libvirt-uri',
                         'host-a=test://%s/missing.xml' % self.workdir)
        self.assertFails(2, 'given twice', 'audit',
                         '--libvirt-uri', 'host-a=test:///default',
                         '--libvirt-uri', 'host-a=test:///default')


class TestConsoleScript(ManageTestCase):
    """The installed ``vfpool-manage``, in its own process."""

    def run_script(self, *args, answer: str | None = None):
        command = ['vfpool-manage', '--config-file', self.config_file]
        if answer is None:
            return subprocess.run(command + list(args), capture_output=True,
                                  text=True, stdin=subprocess.DEVNULL,
                                  timeout=120)
        # A real terminal on stdin, with the operator's answer typed.
        master, slave = pty.openpty()
        self.addCleanup(os.close, master)
        try:
            os.write(master, answer.encode())
            return subprocess.run(command + list(args), capture_output=True,
                                  text=True, stdin=slave, timeout=120)
        finally:
            os.close(slave)

    def test_json_and_exit_codes(self):
        self.report('host-a', inv.pf(0x05, 2))
        done = self.run_script('vf', 'list', '--format', 'json')
        self.assertEqual(0, done.returncode, done.stderr)
        self.assertEqual(['0000:05:10.0', '0000:05:10.1'],
                         [vf['address'] for vf in json.loads(done.stdout)])
        done = self.run_script('vf', 'show', 'host-a', 'zz')
        self.assertEqual((2, ''), (done.returncode, done.stdout))
        self.assertEqual(1, len(done.stderr.strip().splitlines()))
        done = self.run_script('vf', 'reserve', 'host-a', '0000:05:10.0')
        self.assertEqual(2, done.returncode)
        self.assertIn('stdin is not a terminal', done.stderr)

    def test_confirmation_on_a_terminal(self):
        self.report('host-a', inv.pf(0x05, 2))
        done = self.run_script('vf', 'reserve', 'host-a', '0000:05:10.0',
                               answer='no\n')
        self.assertEqual(2, done.returncode, done.stderr)
        self.assertEqual('available',
                         self.vf('host-a', '0000:05:10.0')['state'])
        done = self.run_script('vf', 'reserve', 'host-a', '0000:05:10.0',
                               '--reason', 'typed yes', answer='yes\n')
        self.assertEqual(0, done.returncode, done.stderr)
        self.assertIn('Proceed? [y/N]', done.stderr)
        vf = self.vf('host-a', '0000:05:10.0')
        self.assertEqual(('reserved', 'typed yes'),
                         (vf['state'], vf['reserved_reason']))
