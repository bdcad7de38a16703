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

"""The guest network lab: a network namespace with a bridge, and a prober.

The namespace is the test's own (``vfpl-<hex>``): its libvirtd daemons run
in it (:class:`vfpool.tests.functional.libvirt_hosts.LibvirtHost` with
``netns``), so every ``<interface type='bridge'>`` of a guest is a tap on
the lab's bridge, and the prober pings the guest from the bridge's
address.  Nothing touches the machine's own network; deleting the
namespace removes the bridge and whatever tap is left.
"""

import json
import os
import pathlib
import select
import signal
import subprocess
import sys
import time
import uuid

import fixtures

PROBER = pathlib.Path(__file__).with_name('prober.py')


def _run(*cmd: str) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError('%s failed (%d): %s' % (' '.join(cmd),
                                                   proc.returncode,
                                                   proc.stderr.strip()))
    return proc.stdout


class NetworkLab(fixtures.Fixture):
    """``ip netns`` of the test with bridge ``br0`` at ``gateway``/24."""

    BRIDGE = 'br0'

    def __init__(self, subnet: str = '10.77.0') -> None:
        super().__init__()
        self.subnet = subnet
        self.gateway = '%s.1' % subnet
        self.name = 'vfpl-%s' % uuid.uuid4().hex[:8]

    def _setUp(self) -> None:
        _run('ip', 'netns', 'add', self.name)
        self.addCleanup(self._delete)
        self.ip('link', 'set', 'lo', 'up')
        self.ip('link', 'add', self.BRIDGE, 'type', 'bridge',
                'forward_delay', '0', 'stp_state', '0')
        self.ip('addr', 'add', '%s/24' % self.gateway, 'dev', self.BRIDGE)
        self.ip('link', 'set', self.BRIDGE, 'up')

    def _delete(self) -> None:
        subprocess.run(['ip', 'netns', 'del', self.name],
                       capture_output=True)

    def address(self, index: int) -> str:
        """The ``index``-th guest address of the lab's subnet (from 2)."""
        return '%s.%d' % (self.subnet, index + 1)

    def ip(self, *args: str) -> str:
        return _run('ip', '-n', self.name, *args)

    def exec(self, *cmd: str) -> list[str]:
        """``cmd`` run inside the namespace."""
        return ['ip', 'netns', 'exec', self.name, *cmd]

    def fdb_port(self, mac: str) -> str | None:
        """The bridge port (a tap) the bridge last learned ``mac`` on."""
        out = _run('bridge', '-n', self.name, 'fdb', 'show', 'br',
                   self.BRIDGE)
        for line in out.splitlines():
            parts = line.split()
            if parts and parts[0] == mac.lower() and 'dev' in parts:
                dev = parts[parts.index('dev') + 1]
                if 'permanent' not in parts:
                    return dev
        return None

    def answers(self, target: str, workdir: str, timeout: float = 30
                ) -> bool:
        """Whether ``target`` answers a ping from the lab within ``timeout``.

        A NIC the guest just configured may need seconds for its link
        (e1000e under TCG): this waits for the first reply.
        """
        out = os.path.join(workdir, 'probe-%s.json' % uuid.uuid4().hex[:6])
        subprocess.run(
            self.exec(sys.executable, str(PROBER), target, '--out', out,
                      '--interval', '0.1', '--until-reply', '--grace', '0.2',
                      '--max-seconds', str(timeout)),
            capture_output=True, check=True, timeout=timeout + 30)
        with open(out) as f:
            return json.load(f)['first_reply'] is not None


class Prober(fixtures.Fixture):
    """A prober process in the lab pinging ``target`` until stopped."""

    def __init__(self, lab: NetworkLab, target: str, workdir: str,
                 interval: float = 0.02, max_seconds: float = 240) -> None:
        super().__init__()
        self.lab = lab
        self.target = target
        self.interval = interval
        self.max_seconds = max_seconds
        self.out = os.path.join(workdir, 'probe-%s.json'
                                % uuid.uuid4().hex[:6])
        self.result: dict | None = None

    def _setUp(self) -> None:
        #: When probing started, roughly (for the outages' offsets).
        self.started_at = time.monotonic()
        self._proc = subprocess.Popen(
            self.lab.exec(sys.executable, str(PROBER), self.target,
                          '--out', self.out,
                          '--interval', str(self.interval),
                          '--max-seconds', str(self.max_seconds)),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True)
        self.addCleanup(self._kill)

    def wait_first_reply(self, timeout: float = 60) -> None:
        """Block until the target answered once (raise if it never does)."""
        deadline = time.monotonic() + timeout
        fd = self._proc.stdout.fileno()
        buf = b''
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                chunk = os.read(fd, 4096)
                buf += chunk
                if b'FIRST-REPLY' in buf:
                    return
                if not chunk:
                    break
        raise AssertionError('%s never answered the prober within %s s: %s'
                             % (self.target, timeout,
                                self._proc.stderr.read().decode() if
                                self._proc.poll() is not None else ''))

    def stop(self) -> dict:
        """Stop probing; the result (see prober.py)."""
        if self.result is None:
            if self._proc.poll() is None:
                self._proc.send_signal(signal.SIGTERM)
            self._proc.wait(timeout=30)
            with open(self.out) as f:
                self.result = json.load(f)
        return self.result

    def _kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
