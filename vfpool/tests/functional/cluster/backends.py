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

"""Databases and brokers a test starts for itself, to break them.

Tests that kill or restart a database or a broker must never touch the
system services, which other tests use at the same time.  These fixtures
run MariaDB (one server, or a Galera cluster), PostgreSQL and RabbitMQ
(one node, or a cluster) as children of the test process, on loopback
ports picked free at run time and with data under a temporary directory.

Every daemon runs in a session of its own, so that killing its process
group takes its helpers along (Galera's rsync SST, Erlang's port
programs).  Cleanup kills rather than stops (the data is thrown away),
then checks that no process whose command line names the fixture's
directory is left.

Run as root, as CI does, MariaDB and PostgreSQL drop to the ``mysql``
and ``postgres`` users; run as anyone else, they run as that user.
"""

import contextlib
import getpass
import glob
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import fixtures
import pymysql

#: rabbitmqctl's own distribution ports (RABBITMQ_CTL_DIST_PORT_MIN..+10):
#: a daemon listening there would make every CLI call fail.
_CTL_DIST_PORTS = range(35672, 35683)


class BackendError(Exception):
    """A database or broker did not start, stop or answer as expected."""


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 right now.

    The kernel hands them out from its ephemeral range, so that parallel
    test workers picking at the same time do not collide; a daemon that
    loses the port anyway fails to start and its fixture says so.
    """
    socks = []
    try:
        ports = []
        while len(ports) < count:
            sock = socket.socket()
            socks.append(sock)
            sock.bind(('127.0.0.1', 0))
            port = sock.getsockname()[1]
            if port not in _CTL_DIST_PORTS:
                ports.append(port)
        return ports
    finally:
        for sock in socks:
            sock.close()


def wait_for(what: str, check, timeout: float, interval: float = 0.2,
             log: str | None = None):
    """Poll ``check()`` until it returns something true, and return that.

    ``check`` may raise while the daemon comes up; the last error and
    the tail of ``log`` go into the failure.  A ``BackendError`` (the
    daemon died) ends the wait at once.
    """
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            result = check()
            if result:
                return result
        except BackendError as e:
            raise BackendError('%s: %s%s' % (what, e, log_tail(log)))
        except Exception as e:
            last = e
        if time.monotonic() > deadline:
            raise BackendError('%s within %d s; last error: %r%s' % (
                what, timeout, last, log_tail(log)))
        time.sleep(interval)


def log_tail(path: str | None, lines: int = 30) -> str:
    if not path or not os.path.exists(path):
        return ''
    with open(path, errors='replace') as f:
        return '\n--- %s ---\n%s' % (path, ''.join(f.readlines()[-lines:]))


def _service_user(name: str) -> pwd.struct_passwd | None:
    """The system account a daemon drops to, when we are root."""
    if os.getuid() != 0:
        return None
    return pwd.getpwnam(name)


def _chown_tree(path: str, user: pwd.struct_passwd | None) -> None:
    if user is None:
        return
    for root, dirs, files in os.walk(path):
        for name in [root] + [os.path.join(root, n) for n in dirs + files]:
            os.chown(name, user.pw_uid, user.pw_gid)


class Daemon:
    """One process a fixture started, in a session of its own."""

    def __init__(self, name: str, argv: list[str], log_path: str,
                 env: dict | None = None,
                 user: pwd.struct_passwd | None = None,
                 cwd: str | None = None):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.env = env
        self.user = user
        self.cwd = cwd
        self.process = None

    def start(self) -> None:
        if self.alive():
            raise BackendError('%s is already running' % self.name)
        ids = {}
        if self.user is not None:
            ids = dict(user=self.user.pw_uid, group=self.user.pw_gid,
                       extra_groups=[])
        with open(self.log_path, 'ab') as log:
            self.process = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=self.env, cwd=self.cwd,
                start_new_session=True, **ids)

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def send_signal(self, sig: int) -> None:
        """Signal the daemon itself (not its helpers)."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, sig)

    def wait(self, timeout: float) -> bool:
        if self.process is None:
            return True
        try:
            self.process.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def kill(self) -> None:
        """SIGKILL the whole session and reap the daemon.

        Only while the daemon is unreaped: its id, which names the
        session, is ours until then and no longer after.  Helpers left
        by a daemon that died on its own are found by their command line
        (see _Backend).
        """
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> None:
        """Ask the daemon to stop; SIGKILL it if it takes too long."""
        self.send_signal(sig)
        if not self.wait(timeout):
            self.kill()
            raise BackendError('%s did not stop within %d s after signal '
                               '%d%s' % (self.name, timeout, sig,
                                         log_tail(self.log_path)))


def _processes_naming(path: str) -> list[tuple[int, str]]:
    found = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open('/proc/%s/cmdline' % entry, 'rb') as f:
                cmdline = f.read().replace(b'\0', b' ').decode(
                    errors='replace')
        except OSError:
            continue
        if path in cmdline:
            found.append((int(entry), cmdline.strip()))
    return found


def _base_dir() -> str:
    """Where the data go: memory if the machine has it to spare."""
    chosen = os.environ.get('VFPOOL_BACKEND_DIR')
    if chosen:
        return chosen
    if os.access('/dev/shm', os.W_OK):
        return '/dev/shm'
    return '/tmp'


#: Seconds a killed session's processes get to be gone.
LEFTOVER_GRACE = 15


class _Backend(fixtures.Fixture):
    """A temporary directory, daemons in it, and a cleanup that kills."""

    prefix = 'vfpool-backend-'
    #: Starts tried, each on new ports, when a daemon lost its port to
    #: another process between free_ports() and its bind().
    attempts = 3

    def _setUp(self):
        for attempt in range(1, self.attempts + 1):
            # Traversable by the service users (the test's own TMPDIR is
            # not); what is in it is theirs.
            self.root = tempfile.mkdtemp(prefix=self.prefix,
                                         dir=_base_dir())
            os.chmod(self.root, 0o755)
            self.daemons: list[Daemon] = []
            try:
                self.start()
                break
            except BaseException:
                clash = _port_clash(self.root)
                self._cleanup()
                if not clash or attempt == self.attempts:
                    raise
        self.addCleanup(self._cleanup)

    def start(self) -> None:
        raise NotImplementedError

    def _cleanup(self) -> None:
        for daemon in self.daemons:
            daemon.kill()
        # The daemons' own children (RabbitMQ's VM under its launcher)
        # may take a while to die of the session's SIGKILL on a busy
        # machine; only those still there after that were not in it.
        deadline = time.monotonic() + LEFTOVER_GRACE
        while True:
            leftovers = _processes_naming(self.root)
            if not leftovers or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        for pid, _cmdline in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)
        if leftovers:
            raise BackendError('processes outlived their session and were '
                               'killed: %s' % leftovers)


def _port_clash(root: str) -> bool:
    """Whether a daemon's log under ``root`` says its port was taken."""
    for path in glob.glob(os.path.join(root, '**', '*.log'),
                          recursive=True):
        with open(path, errors='replace') as f:
            text = f.read()
        if 'Address already in use' in text or 'eaddrinuse' in text:
            return True
    return False


# -- MariaDB and Galera ----------------------------------------------------

#: Where distributions install the Galera 4 provider.
_GALERA_PROVIDERS = ('/usr/lib/galera/libgalera_smm.so',
                     '/usr/lib/galera-4/libgalera_smm.so',
                     '/usr/lib64/galera-4/libgalera_smm.so',
                     '/usr/lib64/galera/libgalera_smm.so')

#: Faster failure detection than Galera's defaults (a killed node stalls
#: the others' commits about 2.4 s instead of 6 s); for tests on one
#: machine, not for a real network.
FAST_EVS = ('evs.suspect_timeout=PT2S;evs.inactive_timeout=PT4S;'
            'evs.keepalive_period=PT0.3S;evs.inactive_check_period=PT0.3S;'
            'evs.join_retrans_period=PT0.3S')

USER = 'vfpool'
PASSWORD = 'vfpool'
DATABASE = 'vfpool'


def _galera_provider() -> str:
    for path in _GALERA_PROVIDERS:
        if os.path.exists(path):
            return path
    raise BackendError('no Galera provider (libgalera_smm.so) in %s; '
                       'install galera-4 (bindep.txt)' % (_GALERA_PROVIDERS,))


class MariaDBNode:
    """One mariadbd: a plain server, or a member of a Galera cluster."""

    def __init__(self, root: str, name: str, port: int,
                 galera: dict | None = None):
        self.name = name
        self.port = port
        self.galera = galera
        self.dir = os.path.join(root, name)
        self.datadir = os.path.join(self.dir, 'data')
        self.socket = os.path.join(self.dir, 'mysqld.sock')
        self.cnf = os.path.join(self.dir, 'my.cnf')
        self.error_log = os.path.join(self.dir, 'error.log')
        self.user = _service_user('mysql')
        os.makedirs(self.datadir)
        self._write_config()
        _chown_tree(self.dir, self.user)
        self.daemon = Daemon(name, [], os.path.join(self.dir, 'stdout.log'))
        self.daemon.argv = self._argv()

    def _write_config(self) -> None:
        lines = ['[mysqld]',
                 'datadir=%s' % self.datadir,
                 'socket=%s' % self.socket,
                 'pid-file=%s' % os.path.join(self.dir, 'mysqld.pid'),
                 'log-error=%s' % self.error_log,
                 'bind-address=127.0.0.1',
                 'port=%d' % self.port,
                 'skip-name-resolve',
                 'default_storage_engine=InnoDB',
                 'innodb_buffer_pool_size=64M',
                 'innodb_log_file_size=32M',
                 'innodb_flush_log_at_trx_commit=0',
                 'max_connections=500']
        if self.user is not None:
            lines.append('user=mysql')
        if self.galera:
            g = self.galera
            lines += [
                # Galera replicates rows only, and needs interleaved
                # auto-increment locks.
                'binlog_format=ROW',
                'innodb_autoinc_lock_mode=2',
                'wsrep_on=ON',
                'wsrep_provider=%s' % _galera_provider(),
                'wsrep_cluster_name=%s' % g['cluster_name'],
                'wsrep_cluster_address=gcomm://%s' % g['cluster_address'],
                'wsrep_node_name=%s' % self.name,
                'wsrep_node_address=127.0.0.1:%d' % g['gcomm_port'],
                'wsrep_node_incoming_address=127.0.0.1:%d' % self.port,
                'wsrep_sst_receive_address=127.0.0.1:%d' % g['sst_port'],
                'wsrep_sst_method=rsync',
                'wsrep_slave_threads=2',
                # Left at the server's default (0) on purpose: causality
                # is what vfpool's [database] mysql_wsrep_sync_wait asks.
                'wsrep_sync_wait=0',
                'wsrep_provider_options="gmcast.listen_addr=tcp://127.0.0.1'
                ':%d;ist.recv_addr=127.0.0.1:%d;gcache.size=64M%s"' % (
                    g['gcomm_port'], g['ist_port'],
                    ';' + g['evs'] if g.get('evs') else ''),
            ]
        lines += ['', '[client]', 'socket=%s' % self.socket, '']
        with open(self.cnf, 'w') as f:
            f.write('\n'.join(lines))

    def _argv(self, *extra: str) -> list[str]:
        # --defaults-file first: never read /etc/mysql, whose socket is
        # the system server's.
        return ['mariadbd', '--defaults-file=%s' % self.cnf] + list(extra)

    def install(self) -> None:
        """Create the system tables (a Galera joiner gets them by SST)."""
        argv = ['mariadb-install-db', '--no-defaults',
                '--datadir=%s' % self.datadir, '--skip-test-db']
        if self.user is not None:
            argv.append('--user=mysql')
        done = subprocess.run(argv, capture_output=True, text=True,
                              timeout=120)
        if done.returncode:
            raise BackendError('mariadb-install-db failed: %s%s'
                               % (done.stdout, done.stderr))

    def start(self, *extra: str) -> None:
        self.daemon.argv = self._argv(*extra)
        self.daemon.start()

    def kill(self) -> None:
        self.daemon.kill()

    def stop(self) -> None:
        self.daemon.stop(signal.SIGTERM, timeout=120)

    def admin(self) -> pymysql.connections.Connection:
        """A connection through the socket as the OS user (unix_socket)."""
        return pymysql.connect(unix_socket=self.socket,
                               user=getpass.getuser(), connect_timeout=2,
                               read_timeout=10, autocommit=True)

    def connect(self, **kwargs) -> pymysql.connections.Connection:
        """A TCP connection as the test user, causality checks off."""
        conn = pymysql.connect(host='127.0.0.1', port=self.port, user=USER,
                               password=PASSWORD, connect_timeout=2,
                               read_timeout=10, autocommit=True, **kwargs)
        if self.galera:
            # Probes must not queue behind a stalled cluster.
            with conn.cursor() as cur:
                cur.execute('SET SESSION wsrep_sync_wait = 0')
        return conn

    def wsrep_status(self) -> dict:
        with contextlib.closing(self.connect()) as conn:
            with conn.cursor() as cur:
                cur.execute("SHOW GLOBAL STATUS LIKE 'wsrep_%'")
                return dict(cur.fetchall())

    def synced(self, size: int) -> bool:
        status = self.wsrep_status()
        return (status.get('wsrep_local_state_comment') == 'Synced'
                and status.get('wsrep_ready') == 'ON'
                and status.get('wsrep_cluster_status') == 'Primary'
                and int(status.get('wsrep_cluster_size', 0)) == size)

    def wait_up(self, timeout: float = 90) -> None:
        def up():
            if not self.daemon.alive():
                raise BackendError('%s exited' % self.name)
            with contextlib.closing(self.admin()):
                return True
        wait_for('%s did not accept connections' % self.name, up, timeout,
                 log=self.error_log)

    def create_user(self) -> None:
        with contextlib.closing(self.admin()) as conn:
            with conn.cursor() as cur:
                for sql in ("CREATE USER '%s'@'127.0.0.1' IDENTIFIED BY "
                            "'%s'" % (USER, PASSWORD),
                            "GRANT ALL ON *.* TO '%s'@'127.0.0.1'" % USER,
                            'CREATE DATABASE %s' % DATABASE):
                    cur.execute(sql)

    def url(self, database: str = DATABASE) -> str:
        return ('mysql+pymysql://%s:%s@127.0.0.1:%d/%s?charset=utf8mb4'
                % (USER, PASSWORD, self.port, database))

    def recovered_position(self) -> str:
        """``uuid:seqno`` from InnoDB, after a crash (``--wsrep-recover``).

        Started from it, the node rejoins by IST instead of a full SST.
        """
        # A fresh name each time, created by mariadbd (as mysql) itself.
        log = os.path.join(self.dir, 'recover-%d.log' % time.monotonic_ns())
        done = subprocess.run(
            self._argv('--wsrep-recover', '--log-error=%s' % log),
            capture_output=True, text=True, timeout=120)
        text = open(log, errors='replace').read() if os.path.exists(
            log) else ''
        found = re.search(r'WSREP: Recovered position: (\S+:-?\d+)', text)
        if done.returncode or not found:
            raise BackendError('--wsrep-recover of %s gave no position '
                               '(exit %d): %s%s' % (self.name,
                                                    done.returncode, text,
                                                    done.stderr))
        return found.group(1)

    def log_since(self, offset: int) -> str:
        with open(self.error_log, errors='replace') as f:
            f.seek(offset)
            return f.read()

    def log_size(self) -> int:
        return os.path.getsize(self.error_log) if os.path.exists(
            self.error_log) else 0


class MariaDB(_Backend):
    """One MariaDB server of the test's own (not Galera)."""

    prefix = 'vfpool-mariadb-'

    def start(self) -> None:
        (port,) = free_ports(1)
        self.node = MariaDBNode(self.root, 'mariadb', port)
        self.daemons.append(self.node.daemon)
        self.node.install()
        self.node.start()
        self.node.wait_up()
        self.node.create_user()
        self.url = self.node.url()

    def restart(self) -> float:
        """Stop cleanly and start again; returns how long it was down."""
        began = time.monotonic()
        self.node.stop()
        self.node.start()
        self.node.wait_up()
        return time.monotonic() - began


class GaleraCluster(_Backend):
    """A MariaDB Galera cluster of ``size`` nodes on loopback.

    Node 0 bootstraps the cluster; the others join it by rsync SST.
    Each node has its own client port, so that each vfpool-server can
    write through a different node.
    """

    prefix = 'vfpool-galera-'

    def __init__(self, size: int = 3, evs: str | None = FAST_EVS):
        super().__init__()
        self.size = size
        self.evs = evs

    def start(self) -> None:
        ports = free_ports(4 * self.size)
        gcomm = ports[self.size:2 * self.size]
        address = ','.join('127.0.0.1:%d' % p for p in gcomm)
        name = os.path.basename(self.root)
        self.nodes = []
        for n in range(self.size):
            node = MariaDBNode(self.root, 'node%d' % n, ports[n], galera={
                'cluster_name': name, 'cluster_address': address,
                'gcomm_port': gcomm[n],
                'ist_port': ports[2 * self.size + n],
                'sst_port': ports[3 * self.size + n],
                'evs': self.evs})
            self.nodes.append(node)
            self.daemons.append(node.daemon)
        first = self.nodes[0]
        first.install()
        first.start('--wsrep-new-cluster')
        first.wait_up()
        first.create_user()
        self.wait_synced(first, size=1)
        for node in self.nodes[1:]:
            node.start()
        for node in self.nodes[1:]:
            self.wait_synced(node)
        self.urls = [node.url() for node in self.nodes]

    def wait_synced(self, node: MariaDBNode, size: int | None = None,
                    timeout: float = 120) -> None:
        size = self.size if size is None else size

        def synced():
            if not node.daemon.alive():
                raise BackendError('%s exited' % node.name)
            return node.synced(size)
        wait_for('%s was not Synced in a cluster of %d' % (node.name, size),
                 synced, timeout, log=node.error_log)

    def kill(self, n: int) -> None:
        """SIGKILL one node, as a power cut would."""
        self.nodes[n].kill()

    def rejoin(self, n: int) -> dict:
        """Bring a killed node back from its recovered position.

        Returns the position, how many write sets it caught up by IST
        (``ist_writesets``; None if it took a full SST instead) and the
        ``seconds`` until it was Synced again.
        """
        node = self.nodes[n]
        began = time.monotonic()
        position = node.recovered_position()
        offset = node.log_size()
        node.start('--wsrep-start-position=%s' % position)
        self.wait_synced(node)
        seqno = int(position.rsplit(':', 1)[1])
        ist = re.search(r'Receiving IST: (\d+) writesets, seqnos (\d+)-',
                        node.log_since(offset))
        caught_up = None
        if ist and int(ist.group(2)) == seqno + 1:
            caught_up = int(ist.group(1))
        return {'position': position, 'ist_writesets': caught_up,
                'seconds': time.monotonic() - began}

    def survivors_synced(self, killed: int) -> None:
        for n, node in enumerate(self.nodes):
            if n != killed:
                self.wait_synced(node, size=self.size - 1)


# -- PostgreSQL ------------------------------------------------------------

def _postgres_bindir() -> str:
    found = sorted(glob.glob('/usr/lib/postgresql/*/bin/postgres'),
                   key=lambda p: int(p.split('/')[4]))
    if found:
        return os.path.dirname(found[-1])
    path = shutil.which('postgres')
    if path:
        return os.path.dirname(path)
    raise BackendError('no PostgreSQL server binaries found')


class PostgreSQL(_Backend):
    """One PostgreSQL server of the test's own."""

    prefix = 'vfpool-postgresql-'

    def start(self) -> None:
        import psycopg2
        self._psycopg2 = psycopg2
        bindir = _postgres_bindir()
        (self.port,) = free_ports(1)
        user = _service_user('postgres')
        self.datadir = os.path.join(self.root, 'data')
        rundir = os.path.join(self.root, 'run')
        os.makedirs(rundir)
        _chown_tree(self.root, user)
        ids = {} if user is None else dict(user=user.pw_uid,
                                           group=user.pw_gid,
                                           extra_groups=[])
        done = subprocess.run(
            [os.path.join(bindir, 'initdb'), '-D', self.datadir, '-A',
             'trust', '-U', 'postgres', '-E', 'UTF8', '--locale=C',
             '--no-sync'], capture_output=True, text=True, timeout=120,
            cwd=self.root, **ids)
        if done.returncode:
            raise BackendError('initdb failed: %s%s' % (done.stdout,
                                                        done.stderr))
        log = os.path.join(self.root, 'postgres.log')
        self.daemon = Daemon('postgres', [
            os.path.join(bindir, 'postgres'), '-D', self.datadir,
            '-p', str(self.port), '-h', '127.0.0.1', '-k', rundir,
            '-c', 'fsync=off', '-c', 'synchronous_commit=off',
            '-c', 'full_page_writes=off', '-c', 'max_connections=300',
            '-c', 'shared_buffers=32MB'], log, user=user, cwd=self.root)
        self.daemons.append(self.daemon)
        self.daemon.start()
        self.wait_up()
        with contextlib.closing(self._connect('postgres')) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute('CREATE DATABASE %s' % DATABASE)
        self.url = ('postgresql+psycopg2://postgres@127.0.0.1:%d/%s'
                    % (self.port, DATABASE))

    def _connect(self, database: str):
        return self._psycopg2.connect(host='127.0.0.1', port=self.port,
                                      user='postgres', dbname=database,
                                      connect_timeout=2)

    def wait_up(self, timeout: float = 60) -> None:
        def up():
            if not self.daemon.alive():
                raise BackendError('postgres exited')
            with contextlib.closing(self._connect('postgres')):
                return True
        wait_for('PostgreSQL did not accept connections', up, timeout,
                 log=self.daemon.log_path)

    def restart(self) -> float:
        """Fast shutdown (sessions terminated) and start again."""
        began = time.monotonic()
        self.daemon.stop(signal.SIGINT, timeout=60)
        self.daemon.start()
        self.wait_up()
        return time.monotonic() - began


# -- RabbitMQ --------------------------------------------------------------

_RABBIT_BIN = '/usr/lib/rabbitmq/bin'


class RabbitNode:
    """One RabbitMQ node: its environment, directories and daemon."""

    def __init__(self, root: str, name: str, port: int, dist_port: int,
                 base_env: dict):
        self.name = name
        self.nodename = '%s@localhost' % name
        self.port = port
        self.dir = os.path.join(root, name)
        self.pid_file = os.path.join(self.dir, 'beam.pid')
        for sub in ('mnesia', 'log'):
            os.makedirs(os.path.join(self.dir, sub))
        conf = os.path.join(self.dir, 'rabbitmq.conf')
        with open(conf, 'w') as f:
            f.write('listeners.tcp.default = 127.0.0.1:%d\n'
                    'cluster_partition_handling = pause_minority\n'
                    'log.console = false\n' % port)
        env_file = os.path.join(self.dir, 'rabbitmq-env.conf')
        open(env_file, 'w').close()
        plugins = os.path.join(self.dir, 'enabled_plugins')
        with open(plugins, 'w') as f:
            f.write('[].\n')
        self.env = dict(
            base_env,
            RABBITMQ_NODENAME=self.nodename,
            RABBITMQ_NODE_IP_ADDRESS='127.0.0.1',
            RABBITMQ_NODE_PORT=str(port),
            RABBITMQ_DIST_PORT=str(dist_port),
            RABBITMQ_MNESIA_BASE=os.path.join(self.dir, 'mnesia'),
            RABBITMQ_LOG_BASE=os.path.join(self.dir, 'log'),
            RABBITMQ_PID_FILE=self.pid_file,
            # Without these the node reads /etc/rabbitmq and tries the
            # system broker's port.
            RABBITMQ_CONFIG_FILE=conf,
            RABBITMQ_CONF_ENV_FILE=env_file,
            RABBITMQ_ENABLED_PLUGINS_FILE=plugins,
            ERL_CRASH_DUMP=os.path.join(self.dir, 'erl_crash.dump'),
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=(
                '-kernel inet_dist_use_interface {127,0,0,1}'))
        self.daemon = Daemon(name, [os.path.join(_RABBIT_BIN,
                                                 'rabbitmq-server')],
                             os.path.join(self.dir, 'log', 'stdout.log'),
                             env=self.env, cwd=self.dir)

    def ctl(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run(
            [os.path.join(_RABBIT_BIN, 'rabbitmqctl'), '-n', self.nodename]
            + list(args), env=self.env, capture_output=True, text=True,
            timeout=timeout)
        if done.returncode:
            raise BackendError('rabbitmqctl %s on %s failed (%d): %s%s%s'
                               % (' '.join(args), self.name,
                                  done.returncode, done.stdout,
                                  done.stderr, log_tail(self.daemon.log_path)))
        return done.stdout

    def start(self) -> None:
        # Starting a node whose previous instance still runs would also
        # delete that one's pid file.
        if self.daemon.alive():
            raise BackendError('%s is already running' % self.name)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.pid_file)
        self.daemon.start()

    def wait_up(self, timeout: float = 120) -> None:
        # `rabbitmqctl wait` needs the pid file, which the node writes
        # early; await_startup right after launch fails instead.
        def pid_file():
            if os.path.exists(self.pid_file):
                return True
            if not self.daemon.alive():
                raise BackendError('%s exited' % self.name)
        wait_for('%s wrote no pid file' % self.name, pid_file, timeout,
                 log=self.daemon.log_path)
        self.ctl('wait', self.pid_file, '--timeout', str(int(timeout)),
                 timeout=timeout + 30)

    def beam_pid(self) -> int:
        with open(self.pid_file) as f:
            return int(f.read().strip())

    def kill(self) -> None:
        """SIGKILL the Erlang VM and everything of its session."""
        self.daemon.kill()

    def stop(self) -> None:
        """A clean shutdown (the VM stops its applications first)."""
        beam = self.beam_pid()
        # The VM is the launcher's child; a stale pid file could name
        # anybody's process.
        if self.daemon.alive() and _parent_of(beam) == self.daemon.pid:
            os.kill(beam, signal.SIGTERM)
        if not self.daemon.wait(120):
            self.daemon.kill()
            raise BackendError('%s did not stop%s' % (
                self.name, log_tail(self.daemon.log_path)))


class RabbitMQ(_Backend):
    """RabbitMQ of the test's own: one node, or a cluster of ``size``.

    The nodes use an epmd of their own on a free port, so that they
    neither clash with nor outlive the system broker's.
    """

    prefix = 'vfpool-rabbitmq-'

    def __init__(self, size: int = 1):
        super().__init__()
        self.size = size

    def start(self) -> None:
        ports = free_ports(2 * self.size + 1)
        epmd_port = ports[-1]
        home = os.path.join(self.root, 'home')
        os.makedirs(home)
        cookie = os.path.join(home, '.erlang.cookie')
        with open(cookie, 'w') as f:
            f.write(os.path.basename(self.root).replace('-', '').upper())
        os.chmod(cookie, 0o400)
        base_env = dict(os.environ, HOME=home,
                        ERL_EPMD_PORT=str(epmd_port),
                        ERL_EPMD_ADDRESS='127.0.0.1')
        base_env.pop('RABBITMQ_NODENAME', None)
        self.epmd = Daemon('epmd', ['epmd', '-port', str(epmd_port),
                                    '-address', '127.0.0.1'],
                           os.path.join(self.root, 'epmd.log'),
                           env=base_env)
        self.daemons.append(self.epmd)
        self.epmd.start()
        wait_for('epmd did not listen', lambda: _port_open(epmd_port), 10,
                 interval=0.05)
        token = os.path.basename(self.root).rsplit('-', 1)[-1].lower()
        self.nodes = [RabbitNode(self.root, 'rmq%s%d' % (token, n),
                                 ports[n], ports[self.size + n], base_env)
                      for n in range(self.size)]
        self.daemons[:0] = [node.daemon for node in self.nodes]
        for node in self.nodes:
            node.start()
        in_parallel([node.wait_up for node in self.nodes])
        first = self.nodes[0]
        for node in self.nodes[1:]:
            node.ctl('stop_app')
            node.ctl('join_cluster', first.nodename)
            node.ctl('start_app')
        self.wait_clustered()

    def transport_url(self, user: str = 'guest',
                      password: str = 'guest') -> str:
        return 'rabbit://%s/' % ','.join(
            '%s:%s@127.0.0.1:%d' % (user, password, node.port)
            for node in self.nodes)

    def running(self, via: 'RabbitNode') -> list[str]:
        status = json.loads(via.ctl('cluster_status', '--formatter',
                                    'json'))
        return sorted(status.get('running_nodes', []))

    def wait_clustered(self, timeout: float = 60) -> None:
        expected = sorted(node.nodename for node in self.nodes)
        via = next(node for node in self.nodes if node.daemon.alive())
        wait_for('RabbitMQ nodes did not all run clustered',
                 lambda: self.running(via) == expected, timeout,
                 interval=0.5)

    def node_of_consumer(self, queue: str) -> int:
        """Index of the node whose channel consumes ``queue``."""
        via = next(node for node in self.nodes if node.daemon.alive())
        # The table, not JSON: JSON gives the pid's node as a number.
        out = via.ctl('list_consumers', 'queue_name', 'channel_pid',
                      '--no-table-headers', '--quiet')
        pids = [line.split('\t')[1] for line in out.splitlines()
                if line.split('\t')[0] == queue]
        if len(pids) != 1:
            raise BackendError('expected one consumer of %s, found %s'
                               % (queue, out))
        for n, node in enumerate(self.nodes):
            if pids[0].startswith('<%s.' % node.nodename):
                return n
        raise BackendError('consumer %s is on no node of ours' % pids[0])

    def queue_types(self) -> dict:
        via = next(node for node in self.nodes if node.daemon.alive())
        rows = json.loads(via.ctl('list_queues', 'name', 'type',
                                  '--formatter', 'json'))
        return {row['name']: row['type'] for row in rows}

    def kill(self, n: int) -> None:
        self.nodes[n].kill()

    def start_node(self, n: int) -> None:
        """Start a stopped or killed node and wait until it is clustered."""
        self.nodes[n].start()
        self.nodes[n].wait_up()
        if self.size > 1:
            self.wait_clustered()

    def restart(self, n: int = 0) -> float:
        """Stop a node cleanly and start it again; seconds it was down."""
        began = time.monotonic()
        self.nodes[n].stop()
        self.start_node(n)
        return time.monotonic() - began


def _parent_of(pid: int) -> int | None:
    try:
        with open('/proc/%d/stat' % pid) as f:
            # pid (comm) state ppid ...; comm may hold spaces.
            return int(f.read().rsplit(')', 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(('127.0.0.1', port)) == 0


def in_parallel(calls: list) -> None:
    """Run the callables in threads; raise the first error."""
    errors = []

    def run(call):
        try:
            call()
        except Exception as e:
            errors.append(e)
    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
