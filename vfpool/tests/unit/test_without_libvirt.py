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

"""vfpool on a machine without libvirt-python.

Each test runs a fresh interpreter in which ``import libvirt`` fails as
it does when the package is not installed (a meta-path finder refuses
it), then runs vfpool's own code: the server, vfpool-manage and
vfpool-status must work; the agent, the audit's libvirt reads and the
compute plugin must say, on one line, which extra to install.
"""

import json
import os
import subprocess
import sys
import textwrap

import fixtures
import testtools

from vfpool import libvirt_import
from vfpool import rpcapi

#: Prepended to every child program: libvirt-python is "not installed".
_NO_LIBVIRT = textwrap.dedent('''\
    import sys

    class _NoLibvirt:
        """Refuse libvirt-python's modules, as when it is not installed."""

        def find_spec(self, name, path=None, target=None):
            if name.split('.')[0] in ('libvirt', 'libvirtmod',
                                      'libvirt_qemu', 'libvirtmod_qemu',
                                      'libvirt_lxc', 'libvirtmod_lxc'):
                raise ModuleNotFoundError('No module named %r' % name,
                                          name=name)
            return None

    sys.meta_path.insert(0, _NoLibvirt())


    def loaded_libvirt():
        return sorted(m for m in sys.modules
                      if m.split('.')[0].startswith('libvirt'))
    ''')

_SERVER = '''
import os
import signal
import threading
import time

from vfpool.cmd import server

conf_file, log_file = sys.argv[1:3]


def stop_once_listening():
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (os.path.exists(log_file) and
                'listening on topic' in open(log_file).read()):
            os.kill(os.getpid(), signal.SIGTERM)
            return
        time.sleep(0.05)
    os._exit(3)


threading.Thread(target=stop_once_listening, daemon=True).start()
server.main(['--config-file', conf_file, '--log-file', log_file])
print('LOADED', loaded_libvirt())
'''

_SERVER_RPC = '''
import json

from vfpool import cmd  # noqa: F401 (oslo.service's threading backend)
from vfpool.tests import fixtures
from vfpool.tests import inventory

with fixtures.Conf() as conf, fixtures.Database(), \\
        fixtures.FakeRPC(conf.conf) as rpc:
    client = rpc.client
    answers = {
        'ping': client.ping(None),
        'report': client.report_inventory(None, 'bare-1',
                                          [inventory.pf(5, 2)]),
        'allocate': client.allocate(None, inventory.new_uuid(), 'bare-1',
                                    [inventory.request()],
                                    inventory.new_uuid()),
    }
print(json.dumps(answers))
print('LOADED', loaded_libvirt())
'''

_MANAGE_AND_STATUS = '''
import json

from vfpool.cmd import manage
from vfpool.cmd import status
from vfpool import config
from vfpool import context
from vfpool.db import api as db_api
from vfpool.server import manager
from vfpool.tests import inventory

conf_file = sys.argv[1]
args = ['--config-file', conf_file]
codes = {'db sync': manage.main(args + ['db', 'sync'])}
# An agent's report, through the server's own code.
conf = config.parse_args(args, setup_logging=False)
db_api.configure(conf)
manager.Manager(conf).report_inventory(
    context.get_admin_context(), host='bare-1', pfs=[inventory.pf(5, 2)])
print('VFS', flush=True)
codes['vf list'] = manage.main(args + ['vf', 'list', '--format', 'json'])
print('END VFS', flush=True)
codes['audit'] = manage.main(args + ['audit', '--format', 'json'])
codes['upgrade check'] = status.main(args + ['upgrade', 'check'])
print('CODES', json.dumps(codes))
print('LOADED', loaded_libvirt())
'''

_AUDIT_LIBVIRT_URI = '''
from vfpool.cmd import manage
from vfpool import config
from vfpool import context
from vfpool.db import api as db_api
from vfpool.server import manager
from vfpool.tests import inventory

args = ['--config-file', sys.argv[1]]
assert manage.main(args + ['db', 'sync']) == 0
conf = config.parse_args(args, setup_logging=False)
db_api.configure(conf)
manager.Manager(conf).report_inventory(
    context.get_admin_context(), host='bare-1', pfs=[inventory.pf(5, 2)])
print('CODE', manage.main(args + ['audit', '--libvirt-uri',
                                  'bare-1=test:///default']))
'''

# What setuptools' console script for vfpool-agent runs.
_AGENT = '''
from vfpool.cmd.agent import main
sys.exit(main())
'''

_LIBRARY = '''
for name in ('vfpool.compute.plugin', 'vfpool.compute.events',
             'vfpool.agent.discovery'):
    try:
        __import__(name)
    except ImportError as exc:
        print(name, type(exc).__name__, exc.name, '|', exc)
    else:
        print(name, 'imported')
'''


def _run(program: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, '-c', _NO_LIBVIRT + program] + list(args),
        capture_output=True, text=True, timeout=120,
        env=dict(os.environ, PYTHONWARNINGS='ignore'))


class TestWithoutLibvirt(testtools.TestCase):

    def setUp(self):
        super().setUp()
        tmp = self.useFixture(fixtures.TempDir()).path
        self.tmp = tmp
        self.conf_file = os.path.join(tmp, 'vfpool.conf')
        with open(self.conf_file, 'w') as f:
            # One worker: the server runs in this test's process, which
            # stops it with SIGTERM once it listens.
            f.write('[DEFAULT]\nstate_path = %s\ntransport_url = fake:/\n'
                    'rpc_topic = bare-%s\ncontrol_exchange = bare-%s\n'
                    'workers = 1\n' % (tmp, os.getpid(), os.getpid()))

    def _loaded(self, out: str) -> list:
        line = [x for x in out.splitlines() if x.startswith('LOADED ')]
        self.assertEqual(1, len(line), out)
        return json.loads(line[0][len('LOADED '):].replace("'", '"'))

    def test_server_starts_and_stops(self):
        log_file = os.path.join(self.tmp, 'server.log')
        proc = _run(_SERVER, self.conf_file, log_file)
        self.assertEqual(0, proc.returncode, proc.stderr)
        self.assertEqual([], self._loaded(proc.stdout))

    def test_server_answers_rpc(self):
        proc = _run(_SERVER_RPC)
        self.assertEqual(0, proc.returncode, proc.stderr)
        answers = json.loads(proc.stdout.splitlines()[0])
        self.assertEqual(rpcapi.RPC_API_VERSION, answers['ping']['version'])
        self.assertEqual(2, answers['report']['added'])
        self.assertEqual('0000:05:00.0', answers['allocate'][0]['pf_address'])
        self.assertEqual([], self._loaded(proc.stdout))

    def test_manage_and_status_run(self):
        proc = _run(_MANAGE_AND_STATUS, self.conf_file)
        self.assertEqual(0, proc.returncode, proc.stderr)
        vfs = json.loads(proc.stdout.split('VFS\n', 1)[1]
                         .split('END VFS\n', 1)[0])
        self.assertEqual(['0000:05:10.0', '0000:05:10.1'],
                         sorted(vf['address'] for vf in vfs))
        codes_line = [x for x in proc.stdout.splitlines()
                      if x.startswith('CODES ')][0]
        codes = json.loads(codes_line[len('CODES '):])
        self.assertEqual(0, codes['db sync'])
        self.assertEqual(0, codes['vf list'])
        self.assertEqual(0, codes['audit'])
        # 0 or 1 (a warning: the host reported long ago is fine), never a
        # failed check (2) or a check that crashed (255).
        self.assertIn(codes['upgrade check'], (0, 1), proc.stdout)
        self.assertEqual([], self._loaded(proc.stdout))

    def test_audit_of_guests_names_the_extra(self):
        proc = _run(_AUDIT_LIBVIRT_URI, self.conf_file)
        self.assertIn('CODE 2', proc.stdout, proc.stderr)
        self.assertEqual(
            ['vfpool-manage: host bare-1: %s' % libvirt_import.MESSAGE],
            proc.stderr.splitlines())

    def test_agent_prints_one_line(self):
        proc = _run(_AGENT)
        self.assertEqual(1, proc.returncode)
        self.assertEqual(['vfpool-agent: %s' % libvirt_import.MESSAGE],
                         proc.stderr.splitlines())
        self.assertIn('pip install ".[libvirt]"', proc.stderr)

    def test_library_import_is_an_import_error(self):
        proc = _run(_LIBRARY)
        self.assertEqual(0, proc.returncode, proc.stderr)
        expected = ' LibvirtMissing libvirt | %s' % libvirt_import.MESSAGE
        self.assertEqual(
            ['vfpool.compute.plugin' + expected,
             'vfpool.compute.events' + expected,
             'vfpool.agent.discovery' + expected],
            proc.stdout.splitlines())


class TestLibvirtImport(testtools.TestCase):
    """Where libvirt-python is installed, the seam hands out the module."""

    def test_the_module_itself(self):
        import libvirt

        from vfpool.libvirt_import import libvirt as seam_libvirt
        self.assertIs(libvirt, seam_libvirt)
        self.assertIs(libvirt, libvirt_import.load())

    def test_other_names_are_attribute_errors(self):
        self.assertRaises(AttributeError, getattr, libvirt_import, 'nope')

    def test_missing_is_an_import_error_naming_the_extra(self):
        error = libvirt_import.LibvirtMissing()
        self.assertIsInstance(error, ImportError)
        self.assertEqual('libvirt', error.name)
        self.assertIn('pip install ".[libvirt]"', str(error))
