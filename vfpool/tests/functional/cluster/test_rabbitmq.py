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

"""vfpool on a 3-node RabbitMQ cluster with quorum queues.

The node that holds a server's consumer is killed mid-load: the quorum
queues live on the two nodes left, oslo.messaging reconnects to another
node of ``transport_url``, and calls go on.
"""

from vfpool.tests.functional import base
from vfpool.tests.functional.cluster import backends
from vfpool.tests.functional.cluster import base as ha_base
from vfpool.tests.functional.cluster import stack as ha_stack

NODES = 3
SERVERS = 2


class TestRabbitCluster(ha_base.FaultTestCase):

    def setUp(self):
        super().setUp()
        self.broker = self.useFixture(backends.RabbitMQ(NODES))
        database = self.useFixture(base.ScratchDatabase('mysql'))
        options = dict(ha_stack.RABBIT_CLUSTER_OPTIONS, **{
            'pool.reaper_interval': ha_base.REAPER_INTERVAL})
        self.stack = self.useFixture(ha_stack.ClusterStack(
            [database.url], self.broker.transport_url(), servers=SERVERS,
            client_timeout=ha_base.TIMEOUT, **options))

    def test_consumer_node_killed(self):
        # What [oslo_messaging_rabbit] rabbit_quorum_queue = true gives:
        # the RPC queues are replicated on every node.
        types = self.broker.queue_types()
        for name in [self.stack.topic] + [self.stack.server_queue(i)
                                          for i in range(SERVERS)]:
            self.assertEqual('quorum', types.get(name), types)
        victim = self.broker.node_of_consumer(self.stack.server_queue(0))

        def inject():
            self.broker.kill(victim)
            return {'killed_node': victim}
        # The two nodes left are a majority of every quorum queue: the
        # load goes on without bringing the third back.
        self.run_fault('RabbitMQ node of a server\'s consumer SIGKILLed',
                       inject)
