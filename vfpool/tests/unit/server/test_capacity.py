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

"""Whether a host's available VFs can serve a set of requests at once."""

import testtools

from vfpool.objects import capacity


def bucket(count, network='physnet1', vendor='8086', product='10ca',
           numa=0):
    return capacity.Bucket(network, vendor, product, numa, count)


def request(count=1, network='physnet1', **kwargs):
    return dict(physical_network=network, count=count, **kwargs)


class TestSatisfiable(testtools.TestCase):

    def check(self, buckets, requests, policy='preferred'):
        return capacity.satisfiable(buckets, requests, policy)

    def test_counts_and_networks(self):
        self.assertTrue(self.check([bucket(2)], [request(2)]))
        self.assertFalse(self.check([bucket(2)], [request(3)]))
        self.assertFalse(self.check([bucket(2)], [request(1, 'physnet2')]))
        self.assertTrue(self.check([bucket(1), bucket(1, 'physnet2')],
                                   [request(), request(1, 'physnet2')]))
        self.assertTrue(self.check([], []))
        self.assertFalse(self.check([], [request()]))

    def test_numa_only_under_required(self):
        buckets = [bucket(1, numa=1)]
        self.assertTrue(self.check(buckets, [request(numa_node=0)]))
        self.assertTrue(self.check(buckets, [request(numa_node=0)],
                                   'ignore'))
        self.assertFalse(self.check(buckets, [request(numa_node=0)],
                                    'required'))
        self.assertTrue(self.check(buckets, [request(numa_node=1)],
                                   'required'))
        self.assertFalse(self.check([bucket(1, numa=None)],
                                    [request(numa_node=0)], 'required'))

    def test_reassigns_when_the_first_choice_blocks_a_later_request(self):
        # a takes any product, b only 10ca, c only 1515: one VF of each
        # product is enough only if a ends on what b and c leave.
        buckets = [bucket(1, product='10ca'), bucket(1, product='1515'),
                   bucket(1, product='10cb')]
        requests = [request(), request(product_id='10ca'),
                    request(product_id='1515')]
        self.assertTrue(self.check(buckets, requests))
        self.assertFalse(self.check(buckets[:2], requests))
        # Chains of moves: a and b could each take two kinds.
        buckets = [bucket(1, product='10ca'), bucket(1, product='1515')]
        self.assertTrue(self.check(buckets, [
            request(), request(product_id='10ca')]))
        self.assertTrue(self.check(buckets * 2, [
            request(2), request(product_id='10ca'),
            request(product_id='1515')]))
        self.assertFalse(self.check(buckets, [
            request(2), request(product_id='10ca')]))
