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

"""get_capacity answers what allocate does, on random small hosts."""

import random

import testtools

from vfpool import context as vfpool_context
from vfpool import exception
from vfpool.objects import allocation
from vfpool.objects import capacity
from vfpool.objects import host
from vfpool.tests import fixtures
from vfpool.tests import inventory as inv

_KINDS = [('8086', '10ca', 0), ('8086', '1515', 0), ('15b3', '1018', 1)]


class TestCapacityIsAllocate(testtools.TestCase):
    """One rule and one matching: capacity says yes iff allocate wins."""

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.Database())
        self.context = vfpool_context.get_admin_context()

    def request(self, rng) -> dict:
        vendor, product, numa = rng.choice(_KINDS)
        request = inv.request()
        if rng.random() < 0.5:
            request['vendor_id'] = vendor
            if rng.random() < 0.5:
                request['product_id'] = product
        if rng.random() < 0.3:
            request['numa_node'] = numa
        return request

    def test_capacity_agrees_with_allocate(self):
        rng = random.Random(18)
        answers = set()
        for n in range(60):
            name = 'h%d' % n
            host.report_inventory(self.context, name, [
                inv.pf(bus, rng.randint(0, 2), vendor_id=vendor,
                       vf_product=product, numa_node=numa)
                for bus, (vendor, product, numa) in enumerate(_KINDS, 5)])
            requests = [self.request(rng)
                        for _ in range(rng.randint(1, 4))]
            for policy in ('preferred', 'required'):
                asked = [dict(r, count=1) for r in requests]
                said = capacity.get_capacity(self.context, [name], asked,
                                             numa_policy=policy)[name]
                instance = inv.new_uuid()
                try:
                    allocation.allocate(self.context, instance, name,
                                        requests, inv.new_uuid(),
                                        numa_policy=policy)
                except exception.NoAvailableVF:
                    won = False
                else:
                    won = True
                    allocation.release(self.context, instance)
                self.assertEqual(said, won, (n, policy, requests))
                answers.add(said)
        self.assertEqual({True, False}, answers)
