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


"""The compute side: a guest's VFs through live migration, one job a module.

Split as Nova's libvirt driver is (driver / guest / host / migration):

``plugin``
    :class:`~vfpool.compute.plugin.VFMigrationPlugin`, the public API a
    compute driver calls (its hooks, :meth:`call` for an idempotent RPC,
    :meth:`detach_vf`, :meth:`close`); it only wires the parts below.
``source``, ``destination``
    The hooks of each side of a live migration, in the order they run.
``settlement``
    Complete or abort a migration at vfpool-server, now or through a
    background settler; both sides use it.
``records``
    What this process remembers of a migration (loaded again from the
    server after a restart) and its threads: lease renewer, settler.
``background``
    Those threads' loops (pacing, bounds, stop).
``guest``
    A VF in a libvirt guest: the connection, the domain lookup, "is this
    VF in there?" (:func:`~vfpool.compute.guest.find_vf_interface`), the
    alias rule, attach and detach.
``libvirt_ops``, ``events``, ``vf_xml``
    libvirt's device calls with their retries and event waits; the
    device-event registry and loop; the ``<interface>`` XML of a VF and
    what is read back from a domain's XML.
``recovery``
    ``[migration] reattach_failure_policy`` for a VF that will not go in.

The Nova driver (:mod:`vfpool.nova`) uses only the plugin's public
methods and :mod:`~vfpool.compute.guest`'s functions.
"""
