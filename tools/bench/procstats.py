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

"""CPU and memory of vfpool-server processes, from /proc (Linux)."""

import os

_TICK = os.sysconf('SC_CLK_TCK')
_PAGE = os.sysconf('SC_PAGE_SIZE')


def _stat(pid: int) -> list[str]:
    with open('/proc/%d/stat' % pid) as f:
        return f.read().rsplit(')', 1)[1].split()


def tree(pid: int) -> list[int]:
    """``pid`` and its live descendants (a server's master and workers)."""
    parents: dict = {}
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                fields = _stat(int(entry))
            except OSError:
                continue
            if fields[0] != 'Z':
                parents.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(parents.get(p, []))
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of ``pids`` so far."""
    total = 0
    for pid in pids:
        try:
            fields = _stat(pid)
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / _TICK


def rss_mb(pid: int) -> float:
    try:
        with open('/proc/%d/statm' % pid) as f:
            return int(f.read().split()[1]) * _PAGE / 2 ** 20
    except OSError:
        return 0.0


def servers(stack) -> list[int]:
    """Every process of a ServiceStack's servers."""
    return [p for proc in stack.procs if proc.process is not None
            for p in tree(proc.process.pid)]


def summary(stack) -> str:
    """'N processes, RSS max X MB (total Y MB)' of a stack's servers."""
    rss = [rss_mb(p) for p in servers(stack)]
    return '%d server process(es), RSS max %.0f MB, total %.0f MB' % (
        len(rss), max(rss or [0]), sum(rss))


def machine_busy() -> tuple[float, int]:
    """(busy CPU seconds of the whole machine so far, number of CPUs).

    From /proc/stat: everything but idle and iowait.  With the servers'
    own figure it tells whether the machine (load generator, broker,
    database and servers on one host) was saturated.
    """
    with open('/proc/stat') as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / _TICK, os.cpu_count() or 1


def own_cpu_seconds() -> float:
    """User + system CPU time of this process (the load generator)."""
    t = os.times()
    return t.user + t.system
