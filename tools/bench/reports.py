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

"""The agents' report_inventory, unchanged and changed, at 1 and 16 callers.

``report unchanged``: a host reports the snapshot it reported last, as
the agent does, by its digest alone (``report_unchanged``, RPC 1.5): the
server's one-UPDATE path.  ``report unchanged 1.4``: the same with the
snapshot and its digest (``report_inventory``, RPC 1.4), for comparison,
as a 1.4 agent sends it.  ``report changed``:
every call flips one VF's netdev, so each report is applied in full (one
VF updated, every other VF compared).  Each caller reports its own host,
as agents do.  Targets (issue 11): unchanged p50 <= 1.5 x ping p50, and
at 16 callers its throughput >= 0.6 x ping's.
"""

import itertools
import threading

from bench.inventory import host_snapshot
from bench.migrations import CALLERS

TARGET_UNCHANGED_VS_PING = 1.5
TARGET_UNCHANGED_RATE_VS_PING = 0.6


class _Reporter:
    """Calls report one host per calling thread, with its own state.

    The benchmark's threads are new for every chunk of calls; they take
    hosts in turn, so the callers of one chunk never share a host, and a
    host's snapshot (and which netdev it had) outlives its thread.
    """

    def __init__(self, ctx, changed: bool, digest_only: bool = False):
        from vfpool import utils

        self.ctx = ctx
        self.changed = changed
        self.digest_only = digest_only
        self.digest = utils.snapshot_digest
        self.turn = itertools.count()
        self.local = threading.local()
        self.lock = threading.Lock()
        self.snapshots: dict = {}

    def _mine(self) -> tuple[str, list]:
        if not hasattr(self.local, 'host'):
            inv = self.ctx.inventory
            with self.lock:
                self.local.host = inv.host(next(self.turn))
                if self.local.host not in self.snapshots:
                    self.snapshots[self.local.host] = host_snapshot(
                        inv.vfs_per_host, inv.pfs_per_host)
        return self.local.host, self.snapshots[self.local.host]

    def __call__(self):
        host, pfs = self._mine()
        if self.changed:
            vf = pfs[0]['vfs'][0]
            vf['netdev'] = None if vf['netdev'] else 'benchv0'
        if self.digest_only:
            if not self.ctx.client.report_unchanged(
                    self.ctx.ctxt, host, self.digest(pfs)):
                raise AssertionError('report_unchanged refused %s' % host)
            return
        counts = self.ctx.client.report_inventory(
            self.ctx.ctxt, host, pfs, digest=self.digest(pfs))
        if self.changed and counts['updated'] != 1:
            raise AssertionError('changed report updated %s' % counts)

    def restore(self):
        """Put the hosts back as they were (netdev None), for later rows."""
        for host, pfs in self.snapshots.items():
            if pfs[0]['vfs'][0]['netdev']:
                pfs[0]['vfs'][0]['netdev'] = None
                self.ctx.client.report_inventory(
                    self.ctx.ctxt, host, pfs, digest=self.digest(pfs))


def report_inventory(ctx) -> None:
    """The EXTRA_SECTIONS entry (see bench.sections.SectionContext)."""
    for name, changed, digest_only in [
            ('report unchanged', False, True),
            ('report unchanged 1.4', False, False),
            ('report changed', True, False)]:
        for callers in CALLERS:
            reporter = _Reporter(ctx, changed, digest_only)
            ctx.measure(name, reporter, callers=callers)
            reporter.restore()
    label = ctx.inventory.label
    ping = ctx.baseline(1)
    row = ctx.report.find(ctx.backend, label, 'report unchanged', 1)
    ctx.add_target('report unchanged p50 / ping p50 @1 (%s)' % label,
                   row.p50 / ping.p50 if row and ping and ping.p50
                   else None, TARGET_UNCHANGED_VS_PING)
    ping16 = ctx.baseline(16)
    row16 = ctx.report.find(ctx.backend, label, 'report unchanged', 16)
    ctx.add_target('report unchanged calls/s / ping calls/s @16 (%s)'
                   % label,
                   row16.rate / ping16.rate if row16 and ping16
                   and ping16.rate else None,
                   TARGET_UNCHANGED_RATE_VS_PING, at_least=True)


#: Picked up by bench.sections.
EXTRA_SECTIONS = [report_inventory]
