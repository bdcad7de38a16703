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

"""Facts the docs state, held to the one place in the code they come from.

When one of these fails, the code moved: update the doc it names.
"""

import os
import re

import testtools

from vfpool.db import migration
from vfpool import rpcapi

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


def _read(*path: str) -> str:
    with open(os.path.join(_ROOT, *path), encoding='utf-8') as f:
        return f.read()


class TestRpcVersion(testtools.TestCase):

    def test_readme_states_the_current_version(self):
        stated = re.findall(r'rpc-api\.rst`, version (\d+\.\d+)',
                            _read('README.md'))
        self.assertEqual([rpcapi.RPC_API_VERSION], stated)

    def test_rpc_api_states_the_current_version(self):
        text = _read('doc', 'source', 'reference', 'rpc-api.rst')
        stated = re.findall(r'The current version is ``(\d+\.\d+)``', text)
        self.assertEqual([rpcapi.RPC_API_VERSION], stated)

    def test_rpc_api_lists_every_version_up_to_the_current_one(self):
        text = _read('doc', 'source', 'reference', 'rpc-api.rst')
        versions = text.split('\nVersions\n', 1)[1].split('\nShared ', 1)[0]
        listed = re.findall(r'^``(\d+)\.(\d+)``$', versions, re.MULTILINE)
        major, minor = rpcapi.RPC_API_VERSION.split('.')
        self.assertEqual([(major, str(m)) for m in range(int(minor) + 1)],
                         listed)


class TestInstallGuide(testtools.TestCase):

    def test_db_sync_sample_names_the_head_revision(self):
        text = _read('doc', 'source', 'install', 'index.rst')
        self.assertEqual([migration.head()],
                         re.findall(r'Database is at revision (\w+)', text))
