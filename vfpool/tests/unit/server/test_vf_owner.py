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


"""The owner fields of a held VF: one list, set by every claim, cleared by
every free."""

import testtools

from vfpool.db import models
from vfpool.objects import vf as vf_obj


class TestOwnerFields(testtools.TestCase):

    def test_a_claim_sets_every_owner_field_and_a_free_clears_them(self):
        held = vf_obj.owner('inst', 'req', 'fa:16:3e:00:00:01', 42, 'port',
                            migration_uuid='mig')
        self.assertEqual(vf_obj.OWNER_FIELDS, tuple(held))
        self.assertEqual(set(vf_obj.OWNER_FIELDS), set(vf_obj.FREE_VALUES))
        self.assertEqual({None}, set(vf_obj.FREE_VALUES.values()))
        self.assertIsNone(held['attach_state'])
        self.assertIsNone(vf_obj.owner('inst', 'req', None, None,
                                       None)['migration_uuid'])

    def test_they_are_nullable_columns_of_a_vf(self):
        columns = models.VirtualFunction.__table__.columns
        for field in vf_obj.OWNER_FIELDS:
            self.assertTrue(columns[field].nullable, field)
