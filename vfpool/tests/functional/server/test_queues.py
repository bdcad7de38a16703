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

"""A test's RPC queues go with it, so tests leave nothing on RabbitMQ."""

import amqp.exceptions
import kombu

from vfpool.tests.functional import base


def exists(queue: str) -> bool:
    url = base.TRANSPORT_URL.replace('rabbit://', 'amqp://', 1)
    with kombu.Connection(url) as conn:
        try:
            conn.channel().queue_declare(queue, passive=True)
        except amqp.exceptions.NotFound:
            return False
        return True


class TestQueues(base.FunctionalTestCase):

    def test_a_stack_deletes_its_topic_queues_at_cleanup(self):
        stack = base.ServiceStack('sqlite', servers=2)
        stack.setUp()
        try:
            declared = [q for q in stack.queues if exists(q)]
        finally:
            stack.cleanUp()
        self.assertEqual([stack.topic, stack.topic + '.server-0',
                          stack.topic + '.server-1'], declared)
        self.assertEqual([], [q for q in stack.queues if exists(q)])
