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

"""Behaviour of ``get_capacity`` (RPC 1.3), shared like api_cases.

A subclass provides ``self.client`` and ``self.engine`` (see
:mod:`vfpool.tests.api_cases`); the unit tests run these on ``fake://``
and SQLite, the functional tests on RabbitMQ and real servers with
SQLite, MariaDB and PostgreSQL.
"""

import sqlalchemy as sa

from vfpool.db import models
from vfpool import exception
from vfpool.tests import api_cases
from vfpool.tests import inventory as inv


class CapacityBehaviour:

    def capacity(self, hosts, *requests):
        return self.client.get_capacity(None, list(hosts),
                                        list(requests))['hosts']

    def test_capacity_counts_available_vfs_per_request(self):
        self.client.report_inventory(None, 'two', [inv.pf(5, 2)])
        self.client.report_inventory(None, 'three', [inv.pf(5, 3)])
        self.assertEqual({'two': True, 'three': True},
                         self.capacity(['two', 'three'],
                                       inv.request(count=2)))
        self.assertEqual({'two': False, 'three': True},
                         self.capacity(['two', 'three'],
                                       inv.request(count=3)))
        # Two requests are served by distinct VFs.
        self.assertEqual({'two': False, 'three': True},
                         self.capacity(['two', 'three'], inv.request(),
                                       inv.request(count=2)))
        # Claimed and allocated VFs do not count, whoever holds them.
        self.client.allocate(None, inv.new_uuid(), 'three',
                             [inv.request()], 'r1')
        self.assertEqual({'two': True, 'three': True},
                         self.capacity(['two', 'three'],
                                       inv.request(count=2)))
        self.assertEqual({'two': False, 'three': False},
                         self.capacity(['two', 'three'],
                                       inv.request(count=3)))

    def test_capacity_leaves_unknown_hosts_out_and_folds_duplicates(self):
        self.client.report_inventory(None, 'h1', [inv.pf(5, 1)])
        self.assertEqual({'h1': True}, self.capacity(
            ['h1', 'nowhere', 'h1'], inv.request()))
        self.assertEqual({}, self.capacity(['nowhere'], inv.request()))

    def test_capacity_without_requests_is_every_enabled_host(self):
        self.client.report_inventory(None, 'h1', [inv.pf(5, 1)])
        self.client.report_inventory(None, 'empty', [])
        self.client.report_inventory(None, 'off', [inv.pf(5, 1)])
        with self.engine.begin() as conn:
            conn.execute(sa.update(models.Host).where(
                models.Host.name == 'off').values(disabled=True))
        self.assertEqual({'h1': True, 'empty': True, 'off': False},
                         self.capacity(['h1', 'empty', 'off']))
        self.assertEqual({'h1': True, 'empty': False, 'off': False},
                         self.capacity(['h1', 'empty', 'off'],
                                       inv.request()))

    def test_capacity_matches_network_device_and_numa(self):
        self.client.report_inventory(None, 'h1', [
            inv.pf(5, 1, numa_node=0),
            inv.pf(7, 1, physical_network='physnet2', numa_node=1,
                   vf_product='1515')])
        yes = {'h1': True}
        no = {'h1': False}
        self.assertEqual(yes, self.capacity(
            ['h1'], inv.request(), inv.request('physnet2')))
        self.assertEqual(no, self.capacity(['h1'], inv.request('physnet3')))
        self.assertEqual(yes, self.capacity(
            ['h1'], inv.request('physnet2', vendor_id='8086',
                                product_id='1515')))
        self.assertEqual(no, self.capacity(
            ['h1'], inv.request(product_id='1515')))
        # [pool] numa_policy is preferred by default: any node serves.
        self.assertEqual(yes, self.capacity(
            ['h1'], inv.request(numa_node=1)))

    def test_capacity_finds_an_assignment_greedy_order_would_miss(self):
        # The first request accepts either VF, the second only the
        # 10ca one: taking 10ca for the first would leave the second
        # without; there is an assignment, so the answer is yes.
        self.client.report_inventory(None, 'h1', [
            inv.pf(5, 1), inv.pf(7, 1, vf_product='1515')])
        self.assertEqual({'h1': True}, self.capacity(
            ['h1'], inv.request(), inv.request(product_id='10ca')))
        self.assertEqual({'h1': False}, self.capacity(
            ['h1'], inv.request(product_id='10ca'),
            inv.request(product_id='10ca')))

    def test_capacity_counts_scarce_requests_exactly(self):
        # Four VFs: three 1515, one 10ca.  Asking 3 in all, the "any"
        # request is plentiful (4 >= 3) but the 10ca one is scarce, so
        # the host's VFs are counted and matched: any x2 + 10ca fits.
        self.client.report_inventory(None, 'h1', [
            inv.pf(5, 3, vf_product='1515'), inv.pf(7, 1)])
        self.assertEqual({'h1': True}, self.capacity(
            ['h1'], inv.request(count=2), inv.request(product_id='10ca')))
        self.assertEqual({'h1': False}, self.capacity(
            ['h1'], inv.request(count=3), inv.request(product_id='10ca'),
            inv.request(product_id='1515')))
        self.assertEqual({'h1': False}, self.capacity(
            ['h1'], inv.request(product_id='10ca'),
            inv.request(product_id='10ca')))
        # Every request plentiful: 2 + 2 of 4 alike VFs.
        self.client.report_inventory(None, 'h2', [inv.pf(5, 4)])
        self.assertEqual({'h2': True}, self.capacity(
            ['h2'], inv.request(count=2), inv.request(count=2)))
        self.assertEqual({'h2': False}, self.capacity(
            ['h2'], inv.request(count=3), inv.request(count=2)))
        # A VF given out no longer counts on either path.
        self.client.allocate(None, inv.new_uuid(), 'h1',
                             [inv.request(product_id='10ca')], 'r1')
        self.assertEqual({'h1': False}, self.capacity(
            ['h1'], inv.request(count=2), inv.request(product_id='10ca')))
        self.assertEqual({'h1': True}, self.capacity(
            ['h1'], inv.request(count=3)))

    def test_capacity_refuses_bad_input_and_changes_nothing(self):
        self.client.report_inventory(None, 'h1', [inv.pf(5, 1)])
        before = api_cases.table_dump(self.engine)
        req = inv.request()
        for hosts, requests in [
                ([], [req]),
                ('h1', [req]),
                (['h1', ''], [req]),
                (['h%d' % i for i in range(20001)], [req]),
                (['h1'], req),
                (['h1'], [dict(req, count=0)]),
                (['h1'], [dict(req, count=65)]),
                (['h1'], [dict(req, count=True)]),
                (['h1'], [dict(req, mac=inv.mac(1))]),
                (['h1'], [dict(req, vlan=1)]),
                (['h1'], [{'count': 1}]),
                (['h1'], [req] * 65)]:
            self.assertRaises(exception.InvalidInput,
                              self.client.get_capacity, None, hosts,
                              requests)
        self.assertEqual(before, api_cases.table_dump(self.engine))
