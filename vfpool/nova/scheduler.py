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

"""Nova scheduler filter: only hosts where vfpool has the flavor's VFs.

Enable it in nova.conf of nova-scheduler (which then also needs
``[vfpool] config_file``, the vfpool file naming the vfpool servers)::

    [filter_scheduler]
    available_filters = nova.scheduler.filters.all_filters
    available_filters = vfpool.nova.scheduler.VfpoolFilter
    enabled_filters = ...,VfpoolFilter

One ``get_capacity`` RPC (1.3) answers for every candidate host of a
scheduling pass (:meth:`VfpoolFilter.filter_all`), never one per host.  A
flavor without ``vfpool:vfs`` passes every host without asking vfpool.
For one that asks for VFs the filter fails closed, logging why: a host
vfpool does not know, vfpool-server unreachable or too old, or a spec it
cannot read pass nothing.  It claims nothing: the compute's ``spawn`` is
the claim (a host may lose its last VF in between; the build then fails
saying so).  A resize may stay on the instance's own host whatever is free
there: it keeps the VFs it has.
"""

import threading

import nova.conf
from nova.scheduler import filters
from oslo_log import log as logging
import oslo_messaging as messaging

from vfpool import exception
from vfpool.nova import config as vf_config
from vfpool.nova import flavor
from vfpool import rpcapi

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF
vf_config.register_nova_opts(CONF)


class VfpoolFilter(filters.BaseHostFilter):
    """Passes the hosts where vfpool can give the flavor's ``vfpool:vfs``."""

    # A rebuild stays on its host with the VFs it has.
    RUN_ON_REBUILD = False

    _lock = threading.Lock()
    _client: rpcapi.VfpoolAPI | None = None

    @classmethod
    def client(cls) -> rpcapi.VfpoolAPI:
        """One client per scheduler process, built on first use."""
        with cls._lock:
            if cls._client is None:
                conf = vf_config.load(CONF.vfpool.config_file)
                # A lost broker fails this pass instead of stalling it.
                cls._client = rpcapi.VfpoolAPI(conf, retry=0)
            return cls._client

    @classmethod
    def reset(cls) -> None:
        """Forget the client (tests; a changed configuration file)."""
        with cls._lock:
            client, cls._client = cls._client, None
        if client is not None:
            client.transport.cleanup()

    def host_passes(self, host_state, spec_obj) -> bool:
        return bool(list(self.filter_all([host_state], spec_obj)))

    def filter_all(self, filter_obj_list, spec_obj):
        hosts = list(filter_obj_list)
        # As BaseHostFilter does: nova.scheduler.utils imports the filters.
        from nova.scheduler import utils as scheduler_utils
        if not hosts or (not self.RUN_ON_REBUILD and
                         scheduler_utils.request_is_rebuild(spec_obj)):
            return hosts
        try:
            requests = flavor.requests(spec_obj.flavor.extra_specs)
        except flavor.InvalidSpec as exc:
            LOG.warning('VfpoolFilter: no host for instance %s: %s',
                        spec_obj.instance_uuid, exc)
            return []
        if not requests:
            return hosts
        # The host the instance runs on is a candidate only for a move
        # that may stay there (a resize): it keeps the VFs it has there
        # (vfpool.nova.lifecycle), so needs none free.
        home = [h for h in hosts
                if spec_obj.instance_uuid in (h.instances or {})]
        hosts = [h for h in hosts if h not in home]
        if not hosts:
            return home
        names = sorted({h.host for h in hosts})
        try:
            answer = self.client().get_capacity(
                None, names, flavor.capacity_requests(requests))['hosts']
        except (exception.VfpoolException, messaging.MessagingException,
                rpcapi.VersionTooNew, vf_config.ConfigError) as exc:
            LOG.warning('VfpoolFilter: vfpool cannot say which of %d '
                        'host(s) have the VFs of instance %s (%s): '
                        'failing closed, no other host passes', len(names),
                        spec_obj.instance_uuid, exc)
            return home
        passed = home + [h for h in hosts if answer.get(h.host)]
        unknown = sorted(set(names) - set(answer))
        LOG.debug('VfpoolFilter: %d of %d host(s) have the VFs of '
                  'instance %s; unknown to vfpool: %s', len(passed),
                  len(hosts), spec_obj.instance_uuid,
                  ', '.join(unknown) or 'none')
        return passed
