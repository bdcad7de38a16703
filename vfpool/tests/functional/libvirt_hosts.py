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

"""Two real libvirtd "hosts" on one machine, for hot-plug and migration tests.

Each :class:`LibvirtHost` is a plain ``libvirtd`` started in its own mount
namespace (``unshare -m --propagation private``) where per-host folders are
bind-mounted over /etc/libvirt, /var/lib/libvirt, /run/libvirt,
/var/log/libvirt and /var/cache/libvirt, with its own ``host_uuid`` (libvirt
refuses to migrate to a host with its own UUID).  Clients reach it through
``qemu+unix:///system?socket=<host>/run/libvirt-sock``, a path visible from
every namespace, which is also what makes peer-to-peer migration between
the two daemons work.

The first process inside the namespace is a small init (see
``_HOST_INIT``): it does the bind mounts, becomes a child subreaper so the
QEMU processes that libvirtd daemonizes stay its children, runs libvirtd,
and on SIGTERM (or when the test process disappears) stops libvirtd, kills
the leftover QEMUs and reaps everything.  Stopping a host is therefore one
signal to one pid we started.

Guests are a tiny Linux (Debian's kernel + a busybox initramfs built by
``tools/build-tiny-guest.sh``) run under TCG, plus an OS-less variant whose
firmware finds nothing to boot, which never answers a hot-unplug request.

Prerequisites (run once, as root):
``tools/setup-libvirt-qemu.sh && tools/build-tiny-guest.sh .tiny-guest``.
"""

import itertools
import os
import pathlib
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from xml.etree import ElementTree as ET

import fixtures
import libvirt

from vfpool.compute import events

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
READY_LINE = 'VFPOOL-GUEST-READY'
NICS_PREFIX = 'VFPOOL-GUEST-NICS:'
# Must match FORMAT in tools/build-tiny-guest.sh.
GUEST_FORMAT = '3'
SETUP_HINT = ('run, as root, from the repository root: '
              'tools/setup-libvirt-qemu.sh && '
              'tools/build-tiny-guest.sh .tiny-guest')

# Per-host folder -> the system path it replaces inside the namespace.
_HOST_MOUNTS = (
    ('etc', '/etc/libvirt'),
    ('lib', '/var/lib/libvirt'),
    ('run', '/run/libvirt'),
    ('log', '/var/log/libvirt'),
    ('cache', '/var/cache/libvirt'),
)
_CAPS_CACHE_PATH = '/var/cache/libvirt/qemu/capabilities'

_QEMU_CONF = '''\
# No cgroups, namespaces, security drivers or virtlogd on test machines.
user = "root"
group = "root"
dynamic_ownership = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
remember_owner = 0
stdio_handler = "file"
'''

_LIBVIRTD_CONF = '''\
auth_unix_rw = "none"
auth_unix_ro = "none"
unix_sock_group = "root"
unix_sock_rw_perms = "0770"
host_uuid = "{host_uuid}"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
'''

# The namespace's init.  argv: host_dir libvirtd caps_cache_dir_or_empty.
# Kept dependency-free: it runs in a fresh interpreter before anything else.
_HOST_INIT = r'''
import ctypes, errno, os, signal, subprocess, sys, time

host_dir, libvirtd, caps_dir = sys.argv[1:4]
mounts = [(os.path.join(host_dir, src), dst) for src, dst in (
    ('etc', '/etc/libvirt'), ('lib', '/var/lib/libvirt'),
    ('run', '/run/libvirt'), ('log', '/var/log/libvirt'),
    ('cache', '/var/cache/libvirt'))]
if caps_dir:
    mounts.append((caps_dir, '/var/cache/libvirt/qemu/capabilities'))
parent = os.getppid()
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
    sys.exit('prctl(PR_SET_CHILD_SUBREAPER) failed: errno %d'
             % ctypes.get_errno())
for src, dst in mounts:
    os.makedirs(dst, exist_ok=True)
    subprocess.run(['mount', '--bind', src, dst], check=True)

stopping = []
signal.signal(signal.SIGTERM, lambda *a: stopping.append(1))
signal.signal(signal.SIGINT, lambda *a: stopping.append(1))
daemon = os.posix_spawn(libvirtd, [libvirtd, '--pid-file',
                                   os.path.join(host_dir, 'libvirtd.pid')],
                        os.environ)
print('host-init %d: libvirtd pid %d' % (os.getpid(), daemon), flush=True)
status = {}


def reap():
    while True:
        try:
            pid, code = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True
        status[pid] = code


def children():
    me = str(os.getpid())
    found = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % entry) as f:
                stat = f.read()
        except OSError:
            continue
        if stat[stat.rindex(')') + 2:].split()[1] == me:
            found.append(int(entry))
    return found


def kill(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


while not stopping and daemon not in status and os.getppid() == parent:
    reap()
    time.sleep(0.2)

if daemon not in status:
    kill(daemon, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while daemon not in status and time.monotonic() < deadline:
        reap()
        time.sleep(0.05)
    if daemon not in status:
        kill(daemon, signal.SIGKILL)
# libvirtd leaves its domains running: the QEMUs are ours to end.
deadline = time.monotonic() + 20
while reap():
    for pid in children():
        kill(pid, signal.SIGKILL)
    if time.monotonic() > deadline:
        break
    time.sleep(0.05)
code = status.get(daemon, 0)
print('host-init %d: libvirtd exited with status %d' % (os.getpid(), code),
      flush=True)
sys.exit(0)
'''


class HarnessPrerequisiteMissing(Exception):
    """The machine lacks something the real-libvirt harness needs."""


def default_guest_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get('VFPOOL_TINY_GUEST_DIR')
                        or REPO_ROOT / '.tiny-guest')


def check_prerequisites(guest_dir: os.PathLike | str | None = None,
                        need_guest: bool = True) -> None:
    """Raise HarnessPrerequisiteMissing naming the setup step to run."""
    problems = []
    if os.geteuid() != 0:
        problems.append('the harness must run as root (mount namespaces, '
                        'bind mounts, a system libvirtd)')
    for binary, package in (('libvirtd', 'libvirt-daemon '
                             'libvirt-daemon-driver-qemu'),
                            ('qemu-system-x86_64', 'qemu-system-x86'),
                            ('unshare', 'util-linux'),
                            ('mount', 'mount')):
        if not _which(binary):
            problems.append('%s not found: apt-get install '
                            '--no-install-recommends %s'
                            % (binary, package))
    try:
        pwd.getpwnam('libvirt-qemu')
    except KeyError:
        problems.append("user 'libvirt-qemu' is missing (libvirt's QEMU "
                        "driver refuses to start without it): run "
                        "tools/setup-libvirt-qemu.sh")
    if need_guest:
        guest_dir = pathlib.Path(guest_dir or default_guest_dir())
        missing = [name for name in ('vmlinuz', 'initrd.img', 'format')
                   if not (guest_dir / name).is_file()]
        if missing:
            problems.append('tiny guest not built (%s missing in %s): run '
                            'tools/build-tiny-guest.sh %s'
                            % (', '.join(missing), guest_dir, guest_dir))
        elif (guest_dir / 'format').read_text().strip() != GUEST_FORMAT:
            problems.append('tiny guest in %s is an older build: run '
                            'tools/build-tiny-guest.sh %s'
                            % (guest_dir, guest_dir))
    if problems:
        raise HarnessPrerequisiteMissing(
            'real libvirt/QEMU harness cannot start:\n  - %s\n(%s)'
            % ('\n  - '.join(problems), SETUP_HINT))


def _which(binary: str) -> str | None:
    return shutil.which(binary, path=os.environ.get('PATH', '') +
                        ':/usr/sbin:/sbin:/usr/bin:/bin')


def free_tcp_port() -> int:
    """A port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


class LibvirtHost(fixtures.Fixture):
    """One libvirtd in its own mount namespace, stopped on cleanup.

    ``caps_cache_dir``, when given, is bind-mounted as the QEMU
    capabilities cache: the first probe of the QEMU binary takes ~8 s and
    the result is valid for every host on this machine.  ``netns`` runs
    the daemon (and so its QEMUs and their taps) in that network
    namespace (``ip netns exec``) instead of the machine's;
    ``migration_host`` is then the address (not a loopback one) its
    incoming migrations listen on, as the machine's host name means
    nothing there.
    """

    def __init__(self, name: str, workdir: os.PathLike | str,
                 caps_cache_dir: os.PathLike | str | None = None,
                 start_timeout: float = 90,
                 netns: str | None = None,
                 migration_host: str | None = None) -> None:
        super().__init__()
        self.netns = netns
        self.migration_host = migration_host
        self.name = name
        self.root = pathlib.Path(workdir) / name
        self.caps_cache_dir = (pathlib.Path(caps_cache_dir)
                               if caps_cache_dir else None)
        self.start_timeout = start_timeout
        self.host_uuid = str(uuid.uuid4())
        self.socket_path = self.root / 'run' / 'libvirt-sock'
        self.uri = 'qemu+unix:///system?socket=%s' % self.socket_path
        self.pid: int | None = None
        self.conn: libvirt.virConnect | None = None
        self._process: subprocess.Popen | None = None
        self._mnt_ns: str | None = None

    @property
    def log_path(self) -> pathlib.Path:
        return self.root / 'log' / 'libvirtd.log'

    def _setUp(self) -> None:
        check_prerequisites(need_guest=False)
        events.start_event_loop()   # before any connection is opened
        for sub, _target in _HOST_MOUNTS:
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / 'etc' / 'libvirtd.conf').write_text(
            _LIBVIRTD_CONF.format(host_uuid=self.host_uuid))
        qemu_conf = _QEMU_CONF
        if self.migration_host:
            qemu_conf += 'migration_host = "%s"\n' % self.migration_host
        (self.root / 'etc' / 'qemu.conf').write_text(qemu_conf)
        if self.caps_cache_dir:
            self.caps_cache_dir.mkdir(parents=True, exist_ok=True)

        started = time.monotonic()
        init_log = open(self.root / 'host-init.log', 'ab')
        try:
            prefix = (['ip', 'netns', 'exec', self.netns]
                      if self.netns else [])
            self._process = subprocess.Popen(
                prefix + ['unshare', '-m', '--propagation', 'private',
                          sys.executable, '-c', _HOST_INIT, str(self.root),
                          _which('libvirtd'),
                          str(self.caps_cache_dir or '')],
                stdin=subprocess.DEVNULL, stdout=init_log,
                stderr=subprocess.STDOUT, close_fds=True,
                start_new_session=True)
        finally:
            init_log.close()
        self.pid = self._process.pid
        self.addCleanup(self._stop)
        self.conn = self._wait_ready()
        self.startup_seconds = time.monotonic() - started

    def _wait_ready(self) -> libvirt.virConnect:
        deadline = time.monotonic() + self.start_timeout
        while not self.socket_path.exists():
            self._check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError('libvirtd of host %s did not create %s '
                                   'in %s s%s' % (self.name, self.socket_path,
                                                  self.start_timeout,
                                                  self._diagnostics()))
            time.sleep(0.05)
        self._mnt_ns = _mount_ns(self.pid)
        # The first connection blocks while libvirtd probes QEMU; never
        # hang the test process forever on it.
        result: dict = {}

        def opener() -> None:
            while time.monotonic() < deadline:
                try:
                    conn = libvirt.open(self.uri)
                    conn.getVersion()
                    result['conn'] = conn
                    return
                except libvirt.libvirtError as exc:
                    result['error'] = exc
                    if self._process.poll() is not None:
                        return
                    time.sleep(0.1)

        thread = threading.Thread(target=opener, daemon=True,
                                  name='libvirt-open-%s' % self.name)
        thread.start()
        thread.join(max(0.0, deadline - time.monotonic()) + 1)
        self._check_alive()
        if 'conn' not in result:
            raise RuntimeError('libvirtd of host %s did not answer on %s '
                               'within %s s: %s%s'
                               % (self.name, self.uri, self.start_timeout,
                                  result.get('error'), self._diagnostics()))
        return result['conn']

    def _check_alive(self) -> None:
        if self._process.poll() is not None:
            raise RuntimeError('libvirtd of host %s exited (status %s)%s'
                               % (self.name, self._process.returncode,
                                  self._diagnostics()))

    def _diagnostics(self) -> str:
        parts = []
        for path in (self.root / 'host-init.log', self.log_path):
            try:
                text = path.read_text(errors='replace')[-3000:]
            except OSError:
                continue
            parts.append('\n--- %s ---\n%s' % (path, text))
        return ''.join(parts)

    def connect(self) -> libvirt.virConnect:
        """A new connection (events flow: the loop is already running)."""
        return libvirt.open(self.uri)

    def _stop(self) -> None:
        if self.conn is not None:
            events.default_registry().unwatch(self.conn)
            try:
                self.conn.close()
            except libvirt.libvirtError:
                pass
            self.conn = None
        if self._process is None or self._process.poll() is not None:
            return
        os.kill(self._process.pid, signal.SIGTERM)
        try:
            self._process.wait(timeout=40)
            return
        except subprocess.TimeoutExpired:
            pass
        # The init did not finish: kill it and whatever still lives in its
        # mount namespace (those become orphans of PID 1).
        self._process.kill()
        self._process.wait()
        if self._mnt_ns:
            for pid in _pids_in_mount_ns(self._mnt_ns):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def _mount_ns(pid: int) -> str | None:
    try:
        return os.readlink('/proc/%d/ns/mnt' % pid)
    except OSError:
        return None


def _pids_in_mount_ns(ns: str) -> list[int]:
    found = []
    for entry in os.listdir('/proc'):
        if entry.isdigit() and _mount_ns(int(entry)) == ns:
            found.append(int(entry))
    return found


def tiny_guest_xml(name: str, serial_path: os.PathLike | str,
                   guest_dir: os.PathLike | str | None = None, *,
                   with_os: bool = True, standby_mac: str | None = None,
                   standby_alias: str = 'ua-standby',
                   root_ports: int = 6) -> str:
    """Domain XML of the test guest.

    q35 (PCIe hot-plug through ACPI on root ports), TCG, 128 MiB, no disk.
    ``with_os=False`` boots no kernel at all, so nothing in the guest ever
    answers an unplug request.  ``standby_mac`` adds the virtio standby
    interface with ``<teaming type='persistent'/>`` that a VF pairs with.
    """
    guest_dir = pathlib.Path(guest_dir or default_guest_dir())
    dom = ET.Element('domain', type='qemu')
    ET.SubElement(dom, 'name').text = name
    ET.SubElement(dom, 'memory', unit='MiB').text = '128'
    ET.SubElement(dom, 'vcpu').text = '1'
    os_elem = ET.SubElement(dom, 'os')
    ET.SubElement(os_elem, 'type', arch='x86_64', machine='q35').text = 'hvm'
    if with_os:
        ET.SubElement(os_elem, 'kernel').text = str(guest_dir / 'vmlinuz')
        ET.SubElement(os_elem, 'initrd').text = str(guest_dir / 'initrd.img')
        ET.SubElement(os_elem, 'cmdline').text = (
            'console=ttyS0 rdinit=/init panic=-1 quiet')
    ET.SubElement(ET.SubElement(dom, 'features'), 'acpi')
    # A guest that panics is gone rather than boot-looping.
    ET.SubElement(dom, 'on_reboot').text = 'destroy'
    devices = ET.SubElement(dom, 'devices')
    ET.SubElement(devices, 'controller', type='pci', index='0',
                  model='pcie-root')
    for index in range(1, root_ports + 1):
        ET.SubElement(devices, 'controller', type='pci', index=str(index),
                      model='pcie-root-port')
    ET.SubElement(devices, 'controller', type='usb', model='none')
    if standby_mac:
        iface = ET.SubElement(devices, 'interface', type='user')
        ET.SubElement(iface, 'mac', address=standby_mac)
        ET.SubElement(iface, 'model', type='virtio')
        ET.SubElement(iface, 'teaming', type='persistent')
        ET.SubElement(iface, 'alias', name=standby_alias)
    serial = ET.SubElement(devices, 'serial', type='file')
    # append: after a migration the destination QEMU reopens the same file.
    ET.SubElement(serial, 'source', path=str(serial_path), append='on')
    ET.SubElement(serial, 'target', port='0')
    ET.SubElement(devices, 'memballoon', model='none')
    return ET.tostring(dom, encoding='unicode')


class TwoHosts(fixtures.Fixture):
    """Two LibvirtHosts (``source`` and ``dest``) and their tiny guests."""

    def __init__(self, workdir: os.PathLike | str | None = None,
                 guest_dir: os.PathLike | str | None = None,
                 caps_cache_dir: os.PathLike | str | None = None) -> None:
        super().__init__()
        self.guest_dir = pathlib.Path(guest_dir or default_guest_dir())
        self._workdir = workdir
        self._caps_cache_dir = caps_cache_dir
        self._names = itertools.count(1)

    def _setUp(self) -> None:
        check_prerequisites(self.guest_dir)
        self.workdir = pathlib.Path(
            self._workdir or self.useFixture(fixtures.TempDir()).path)
        self.serial_dir = self.workdir / 'serial'
        self.serial_dir.mkdir(parents=True, exist_ok=True)
        caps = pathlib.Path(self._caps_cache_dir or
                            os.environ.get('VFPOOL_QEMU_CAPS_CACHE') or
                            self.guest_dir / 'qemu-caps-cache')
        try:
            caps.mkdir(parents=True, exist_ok=True)
        except OSError:
            caps = self.workdir / 'qemu-caps-cache'
        self.caps_cache_dir = caps
        # One after the other: the second reuses the capabilities the first
        # probed (a cold probe costs ~8 s, a warm start well under 1 s).
        self.source = self.useFixture(
            LibvirtHost('source', self.workdir, caps))
        self.dest = self.useFixture(LibvirtHost('dest', self.workdir, caps))
        self.hosts = (self.source, self.dest)

    def serial_path(self, name: str) -> pathlib.Path:
        return self.serial_dir / ('%s.log' % name)

    def start_guest(self, host: LibvirtHost, name: str | None = None, *,
                    with_os: bool = True, standby_mac: str | None = None,
                    wait_ready: bool = True,
                    ready_timeout: float = 120) -> libvirt.virDomain:
        """Define, start and (with an OS) wait for a persistent tiny guest.

        The guest is destroyed and undefined on cleanup wherever it runs.
        """
        name = name or 'guest%d' % next(self._names)
        xml = tiny_guest_xml(name, self.serial_path(name), self.guest_dir,
                             with_os=with_os, standby_mac=standby_mac)
        dom = host.conn.defineXML(xml)
        dom_uuid = dom.UUIDString()
        self.addCleanup(self.remove_guest, dom_uuid)
        dom.create()
        if with_os and wait_ready:
            self.wait_guest_ready(dom, ready_timeout)
        return dom

    def wait_guest_ready(self, dom: libvirt.virDomain,
                         timeout: float = 120) -> float:
        """Block until the guest printed its ready line; seconds waited."""
        started = time.monotonic()
        path = self.serial_path(dom.name())
        while True:
            try:
                if READY_LINE in path.read_text(errors='replace'):
                    return time.monotonic() - started
            except FileNotFoundError:
                pass
            if not dom.isActive():
                raise RuntimeError('guest %s stopped before it was ready:\n%s'
                                   % (dom.name(), self.serial_tail(dom)))
            if time.monotonic() - started > timeout:
                raise RuntimeError('guest %s not ready within %s s:\n%s'
                                   % (dom.name(), timeout,
                                      self.serial_tail(dom)))
            time.sleep(0.1)

    def serial_tail(self, dom: libvirt.virDomain, chars: int = 2000) -> str:
        try:
            return self.serial_path(dom.name()).read_text(
                errors='replace')[-chars:]
        except FileNotFoundError:
            return '<no serial output>'

    def migrate(self, dom: libvirt.virDomain, src: LibvirtHost,
                dst: LibvirtHost) -> libvirt.virDomain:
        """Live peer-to-peer migration; returns the domain on ``dst``."""
        port = free_tcp_port()
        params = {
            libvirt.VIR_MIGRATE_PARAM_URI: 'tcp://127.0.0.1:%d' % port,
            libvirt.VIR_MIGRATE_PARAM_LISTEN_ADDRESS: '127.0.0.1',
        }
        flags = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER |
                 libvirt.VIR_MIGRATE_PERSIST_DEST |
                 libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)
        dom_uuid = dom.UUIDString()
        dom.migrateToURI3(dst.uri, params, flags)
        return dst.conn.lookupByUUIDString(dom_uuid)

    def guest_nics(self, dom: libvirt.virDomain) -> set[str] | None:
        """MACs the guest kernel last reported seeing (None: no report)."""
        try:
            text = self.serial_path(dom.name()).read_text(errors='replace')
        except FileNotFoundError:
            return None
        reports = [line for line in text.splitlines()
                   if line.startswith(NICS_PREFIX)]
        if not reports:
            return None
        return set(reports[-1][len(NICS_PREFIX):].split())

    def wait_guest_nic(self, dom: libvirt.virDomain, mac: str,
                       present: bool = True, timeout: float = 30) -> float:
        """Wait until the guest sees (or no longer sees) ``mac``.

        Proves the guest kernel itself noticed the hot-plug: the tiny
        guest reports its NIC set on the serial console within ~0.5 s.
        """
        started = time.monotonic()
        mac = mac.lower()
        while True:
            nics = self.guest_nics(dom)
            if nics is not None and (mac in nics) == present:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise AssertionError(
                    'guest %s still %s %s after %s s; serial:\n%s'
                    % (dom.name(), 'lacks' if present else 'has', mac,
                       timeout, self.serial_tail(dom)))
            time.sleep(0.1)

    def find_guest(self, dom_uuid: str
                   ) -> tuple[LibvirtHost, libvirt.virDomain] | None:
        """The host a guest is defined or running on, and its domain."""
        for host in self.hosts:
            dom = _lookup(host, dom_uuid)
            if dom is not None:
                return host, dom
        return None

    def remove_guest(self, dom_uuid: str) -> None:
        """Destroy and undefine a guest wherever it is; idempotent."""
        for host in self.hosts:
            dom = _lookup(host, dom_uuid)
            if dom is None:
                continue
            try:
                if dom.isActive():
                    dom.destroy()
                if dom.isPersistent():
                    dom.undefine()
            except libvirt.libvirtError:
                # The host is stopped right after; its QEMU dies with it.
                pass


def _lookup(host: LibvirtHost, dom_uuid: str) -> libvirt.virDomain | None:
    # listAllDomains rather than lookupByUUIDString: a miss is no error
    # (libvirt's default handler would print every one on stderr).
    if host.conn is None:
        return None
    try:
        domains = host.conn.listAllDomains(0)
    except libvirt.libvirtError:
        return None
    for dom in domains:
        if dom.UUIDString() == dom_uuid.lower():
            return dom
    return None
