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

"""vfpool.rpc_types against what the server really answers."""

import typing

import testtools

from vfpool import rpc_types
from vfpool.tests import fixtures
from vfpool.tests import inventory as inv


def keys(shape: type) -> list[str]:
    return sorted(typing.get_type_hints(shape))


class TestShapes(testtools.TestCase):
    """Every key a TypedDict names is answered, and nothing else."""

    def setUp(self):
        super().setUp()
        conf = self.useFixture(fixtures.Conf()).conf
        self.useFixture(fixtures.Database())
        self.client = self.useFixture(fixtures.FakeRPC(conf)).client

    def test_answers_have_the_typed_keys(self):
        c, instance, migration = self.client, inv.new_uuid(), inv.new_uuid()
        self.assertEqual(keys(rpc_types.InventoryCounts),
                         sorted(c.report_inventory(None, 'src',
                                                   [inv.pf(5, 2)])))
        c.report_inventory(None, 'dst', [inv.pf(6, 2)])
        [alloc] = c.allocate(None, instance, 'src', [inv.request()], 'r')
        self.assertEqual(keys(rpc_types.Allocation), sorted(alloc))
        self.assertEqual(keys(rpc_types.AttachStateAllocation), sorted(
            c.set_attach_state(None, instance, 'src', alloc['address'],
                               'attached')))
        [pair] = c.prepare_migration(None, migration, instance, 'src', 'dst')
        self.assertEqual(keys(rpc_types.MigrationPair), sorted(pair))
        self.assertEqual(keys(rpc_types.Allocation), sorted(pair['dest']))
        answer = c.get_instance(None, instance)
        self.assertEqual(keys(rpc_types.Instance), sorted(answer))
        self.assertEqual(keys(rpc_types.InstanceAllocation),
                         sorted(answer['allocations'][0]))
        self.assertEqual(keys(rpc_types.Migration),
                         sorted(answer['migration']))
        [done] = c.complete_migration(None, migration)
        self.assertEqual(keys(rpc_types.Allocation), sorted(done))
        self.assertEqual(keys(rpc_types.Allocation), sorted(
            c.replace_allocation(None, instance, 'dst', done['address'])))
        self.assertEqual(keys(rpc_types.Capacity), sorted(c.get_capacity(
            None, ['src', 'dst'], [{'physical_network': 'physnet1'}])))
        self.assertEqual(keys(rpc_types.Ping), sorted(c.ping(None)))
