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

"""Real ``vfpool-agent`` processes and libvirt test-driver hosts for them."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from xml.etree import ElementTree

import fixtures

from vfpool import pci
from vfpool.tests.functional import base

HOSTS = os.path.abspath(os.path.join(os.path.dirname(__file__), '..',
                                     'data', 'hosts'))


def host_path(name: str) -> str:
    return os.path.join(HOSTS, name)


def test_uri(path: str) -> str:
    """libvirt's test driver loaded with the node devices of ``path``."""
    return 'test://' + os.path.abspath(path)


def service_stack(backend: str, **options) -> base.ServiceStack:
    """A ServiceStack on its own RPC topic as well as its own exchange.

    oslo.messaging's rabbit driver names the topic queue after the topic
    only, so stacks on different exchanges but on the default topic share
    one queue, and a server of one test can take another test's calls.
    """
    options.setdefault('rpc_topic', 'vfpool-%s' % uuid.uuid4().hex)
    return base.ServiceStack(backend, **options)


def without_devices(source: str, target: str, addresses: set) -> str:
    """Copy a test-driver host without the PCI devices at ``addresses``.

    Their net devices go too.  The PFs still list them in
    ``virt_functions``: the node devices vanished, as when libvirt can no
    longer read them.
    """
    tree = ElementTree.parse(source)
    root = tree.getroot()
    gone = set()
    for device in list(root.findall('device')):
        cap = device.find("capability[@type='pci']")
        if cap is None:
            continue
        fields = [int(cap.find(k).text, 0) for k in pci.FIELDS]
        if pci.format_address(*fields) in addresses:
            gone.add(device.findtext('name').strip())
            root.remove(device)
    if len(gone) != len(addresses):
        raise AssertionError('not all of %s are in %s' % (addresses, source))
    for device in list(root.findall('device')):
        if (device.findtext('parent') or '').strip() in gone:
            root.remove(device)
    tree.write(target)
    return target


def _console_script(name: str) -> str:
    """The installed console script next to this interpreter."""
    path = os.path.join(os.path.dirname(sys.executable), name)
    return path if os.path.exists(path) else shutil.which(name)


def messaging_options(stack: base.ServiceStack) -> dict:
    """What an agent needs to reach the stack's servers."""
    return {'transport_url': stack.conf.transport_url,
            'control_exchange': stack.conf.control_exchange,
            'rpc_topic': stack.conf.rpc_topic}


class AgentProcess(fixtures.Fixture):
    """The real ``vfpool-agent`` console script, in its own session.

    ``messaging`` holds its transport URL, exchange and topic (see
    :func:`messaging_options`); the agent knows nothing of the database.
    """

    def __init__(self, messaging: dict, host: str, libvirt_uri: str,
                 specs: list[str], **options):
        super().__init__()
        self.messaging = messaging
        self.host = host
        self.libvirt_uri = libvirt_uri
        self.specs = specs
        self.options = options
        self.process = None
        self.returncode = None
        # Where in the log the current process's lines begin.
        self.mark = 0

    def _setUp(self):
        self.workdir = self.useFixture(fixtures.TempDir()).path
        self.log_path = os.path.join(self.workdir, 'agent.log')
        self.configure(self.libvirt_uri)
        self.start()
        self.addCleanup(self.stop)

    def configure(self, libvirt_uri: str) -> None:
        """Write the config file that the next ``start`` uses."""
        sections = {
            'DEFAULT': dict(self.messaging, host=self.host,
                            rpc_response_timeout=5,
                            graceful_shutdown_timeout=10, debug='false'),
            'agent': {'libvirt_uri': libvirt_uri,
                      'report_interval': 1,
                      'max_backoff': 2,
                      'device_spec': list(self.specs)},
        }
        for key, value in self.options.items():
            group, _, name = key.rpartition('.')
            sections.setdefault(group or 'DEFAULT', {})[name] = value
        self.config_file = base.write_config(
            os.path.join(self.workdir, 'agent.conf'), sections)

    def start(self) -> None:
        with open(self.log_path, 'ab') as log:
            self.process = subprocess.Popen(
                [_console_script('vfpool-agent'),
                 '--config-file', self.config_file],
                stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        self.returncode = None

    def wait_exit(self, timeout: float = 30) -> int:
        """The exit status of an agent expected to end by itself."""
        try:
            self.returncode = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError('vfpool-agent still runs after %d s; log:'
                                 '\n%s' % (timeout, self.output()[-4000:]))
        self.process = None
        return self.returncode

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout: float = 20) -> int | None:
        """Signal the agent's process group; its exit status."""
        if self.process is None:
            return self.returncode
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.returncode = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            raise AssertionError('vfpool-agent ignored signal %d for %d s'
                                 % (sig, timeout))
        finally:
            self.process = None
        return self.returncode

    def restart(self, libvirt_uri: str | None = None) -> None:
        """Stop, mark the log, start again (on another host file)."""
        self.stop()
        if libvirt_uri is not None:
            self.configure(libvirt_uri)
        self.mark = len(self.output())
        self.start()

    def output(self) -> str:
        with open(self.log_path, errors='replace') as f:
            return f.read()

    def lines(self, pattern: str, since_mark: bool = True) -> list[str]:
        """Log lines matching a regular expression."""
        text = self.output()[self.mark if since_mark else 0:]
        return [line for line in text.splitlines()
                if re.search(pattern, line)]

    def wait_for(self, predicate, what: str, timeout: float = 30):
        """Poll until ``predicate()`` is true; fail with the log tail."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError('%s: not within %d s; agent alive: %s; '
                                     'log:\n%s' % (what, timeout,
                                                   self.alive(),
                                                   self.output()[-4000:]))
            time.sleep(0.2)

    def wait_for_lines(self, pattern: str, count: int = 1,
                       timeout: float = 30) -> list[str]:
        def enough():
            found = self.lines(pattern)
            return found if len(found) >= count else None
        return self.wait_for(enough, '%d log lines matching %r'
                             % (count, pattern), timeout)


def spec(**fields) -> str:
    return json.dumps(fields)


class BrokerProxy(fixtures.Fixture):
    """A TCP relay to the test broker that a test can cut and restore.

    Cutting closes the listening socket and every relayed connection,
    which is what clients see of a broker that died; restoring listens
    again on the same port.
    """

    def __init__(self, target: tuple[str, int] = ('127.0.0.1', 5672)):
        super().__init__()
        self.target = target
        self.port = None
        self._listener = None
        self._sockets = set()
        self._lock = threading.Lock()

    def _setUp(self):
        self.restore()
        self.addCleanup(self.cut)

    @property
    def url(self) -> str:
        return 'rabbit://guest:guest@127.0.0.1:%d/' % self.port

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(('127.0.0.1', self.port or 0))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,),
                         daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, set()
        for sock in ([listener] if listener else []) + list(sockets):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _addr = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._sockets.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst),
                                 daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
