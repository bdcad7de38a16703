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

"""Nova's scheduler with ``VfpoolFilter``, against a real vfpool-server.

The filter asks vfpool once per scheduling pass for every candidate host
(``get_capacity``); the spies here count those calls on the real client.
"""

from vfpool.nova import scheduler
from vfpool.nova.tests.functional import test_cold_migration as cold
from vfpool.nova.tests.functional import test_lifecycle as lc
from vfpool.tests import api_cases


class SchedulerBase(lc.LifecycleBase):

    ADDITIONAL_FILTERS = ['VfpoolFilter']

    def setUp(self):
        super().setUp()
        self.addCleanup(scheduler.VfpoolFilter.reset)
        self.capacity_calls = []

    def _setup_scheduler_service(self):
        self.flags(available_filters=[
            'nova.scheduler.filters.all_filters',
            'vfpool.nova.scheduler.VfpoolFilter'], group='filter_scheduler')
        return super()._setup_scheduler_service()

    def count_capacity_calls(self):
        """Record the host lists of the filter's get_capacity calls."""
        real = scheduler.VfpoolFilter.client()
        get_capacity = real.get_capacity

        def counted(context, hosts, requests):
            self.capacity_calls.append(sorted(hosts))
            return get_capacity(context, hosts, requests)
        real.get_capacity = counted


class TestVfpoolFilter(SchedulerBase):

    def setUp(self):
        super().setUp()
        self.full = self.start_vfpool_compute('full')
        self.unknown = self.start_vfpool_compute('unknown', report=False)
        self.free_host = self.start_vfpool_compute('free')
        self.take_all(self.full)
        self.count_capacity_calls()

    def test_picks_the_only_host_with_capacity_in_one_call(self):
        server = self._create_server(flavor_id=self.vf_flavor(),
                                     networks='none')

        self.assertEqual(self.free_host, server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual([sorted([self.full, self.unknown,
                                  self.free_host])], self.capacity_calls)
        self.assertEqual(self.allocations(server),
                         self.guest_vfs(self.free_host, server))
        self.assertEqual(2, len(self.allocations(server)))

    def test_no_host_with_a_free_vf_is_no_valid_host_nothing_claimed(self):
        self.take_all(self.free_host)
        before = api_cases.table_dump(self.vfpool.engine)

        server = self._create_server(flavor_id=self.vf_flavor(),
                                     networks='none', expected_state='ERROR')

        self.assertIn('No valid host', server['fault']['message'])
        self.assertEqual(before, api_cases.table_dump(self.vfpool.engine))
        self.assertEqual(1, len(self.capacity_calls))

    def test_flavor_without_vfs_passes_every_host_without_asking(self):
        server = self._create_server(flavor_id=self._create_flavor(),
                                     networks='none',
                                     host=self.unknown)

        self.assertEqual(self.unknown, server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual([], self.capacity_calls)


class TestResizeOnItsOwnHost(SchedulerBase):
    """``allow_resize_to_same_host``: the VFs stay, none need be free."""

    def test_resize_on_its_full_host_keeps_its_vfs(self):
        self.flags(allow_resize_to_same_host=True)
        host = self.start_vfpool_compute('host')
        server = self.boot(host, self.vf_flavor())
        before = self.allocations(server)
        # Everything else on the host is taken.
        self.take_all(host, lc.VFS_A[1:], lc.PHYSNET_A)
        self.take_all(host, lc.VFS_B[1:], lc.PHYSNET_B)
        self.assertEqual([], self.free_vfs(host))
        self.count_capacity_calls()
        bigger = self._create_flavor(
            memory_mb=4096, extra_spec={'vfpool:vfs': lc.TWO_NETWORKS})

        with cold.NO_DISK_COPY:
            server = self._resize_server(server, bigger)

        self.assertEqual(host, server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual([], self.capacity_calls)
        self.assertEqual(before, self.allocations(server))
        self.assertEqual(before, self.guest_vfs(host, server))
        self._confirm_resize(server)
        self.assertEqual(before, self.allocations(server))
        self.assertEqual([], self.free_vfs(host))


class TestVfpoolUnreachable(SchedulerBase):

    PRIVATE_VFPOOL = True

    def test_fails_closed_for_a_flavor_with_vfs_and_says_why(self):
        self.host = self.start_vfpool_compute('host')
        before = api_cases.table_dump(self.vfpool.engine)
        for proc in self.vfpool.procs:
            proc.kill()

        server = self._create_server(flavor_id=self.vf_flavor(),
                                     networks='none', expected_state='ERROR')

        self.assertIn('No valid host', server['fault']['message'])
        self.assertIn('failing closed', self.stdlog.logger.output)
        self.assertEqual(before, api_cases.table_dump(self.vfpool.engine))
