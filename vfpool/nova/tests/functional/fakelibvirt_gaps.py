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

"""What Nova 34's fakelibvirt lacks for vfpool, filled in for the tests.

Nova's functional tests run every compute on ``nova.tests.fixtures.libvirt``
(fakelibvirt), an in-memory stand-in for the libvirt binding.  vfpool's
compute plugin needs four things it does not do, added here by
:class:`FakeLibvirtGaps` without touching the installed Nova:

* ``virDomain.connect()`` (the plugin asks a domain for its connection);
* several callbacks per event id (fakelibvirt keeps only the last one
  registered), with ``domainEventDeregisterAny``;
* DEVICE_REMOVED when a live detach removed a device, delivered to the
  registered callbacks as libvirt does.  Nova's functional base stubs out
  ``Host``'s connection setup, so :func:`register_nova_host_events`
  subscribes the compute's ``Host`` as ``Host._get_new_connection`` would;
* an ``<interface type='hostdev'>``, hot-plugged or (vfpool's own) in the
  XML a domain is defined with, rendered as libvirt renders it (PCI source
  address, VLAN, alias, no tap ``<target>``) instead of ``<source
  hostdev='None'/>``.

And two hypervisor faults a test can ask of one fake host's connection:
``refuse_attach`` (VF PCI addresses whose hot-plug libvirt refuses, each
refusal appended to ``refused_attempts``) and ``stuck_macs`` (interfaces
the guest never lets go of on detach).

:class:`FakeLibvirtModule` makes vfpool's modules use fakelibvirt as their
``libvirt``, as Nova's ``LibvirtFixture`` does for Nova's modules: one fake
binding for the whole process, so that vfpool catches the errors it
raises.
"""

from xml.etree import ElementTree as ET

import fixtures
from nova.tests.fixtures import libvirt as fakelibvirt
from nova.virt.libvirt import host as nova_host

from vfpool import pci

_VFPOOL_LIBVIRT_MODULES = (
    'vfpool.compute.events',
    'vfpool.compute.libvirt_ops',
    'vfpool.compute.plugin',
    'vfpool.agent.discovery',
)
_HOSTDEV_NIC = '_vfpool_hostdev_xml'
#: The alias prefix of vfpool's VFs (vfpool.compute.plugin.vf_alias).
_VFPOOL_ALIAS = 'ua-vf-'


class FakeLibvirtModule(fixtures.Fixture):
    """vfpool's modules see fakelibvirt as ``libvirt``."""

    def _setUp(self):
        for module in _VFPOOL_LIBVIRT_MODULES:
            self.useFixture(fixtures.MonkeyPatch(module + '.libvirt',
                                                 fakelibvirt))


def _callbacks(conn) -> dict:
    if not hasattr(conn, '_vfpool_callbacks'):
        conn._vfpool_callbacks = {}
        conn._vfpool_next_callback = 1
    return conn._vfpool_callbacks


def _register_any(conn, dom, event_id, callback, opaque):
    callbacks = _callbacks(conn)
    callback_id = conn._vfpool_next_callback
    conn._vfpool_next_callback += 1
    callbacks[callback_id] = (event_id, callback, opaque)
    # fakelibvirt's own lifecycle emitter reads this one entry.
    conn._event_callbacks[event_id] = [callback, opaque]
    return callback_id


def _deregister_any(conn, callback_id):
    _callbacks(conn).pop(callback_id, None)


def _emit(conn, event_id, *args):
    for ev, callback, opaque in list(_callbacks(conn).values()):
        if ev == event_id:
            callback(conn, *args, opaque)


def _emit_lifecycle(conn, dom, event, detail):
    _emit(conn, fakelibvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, dom, event,
          detail)


def _domain_connect(dom):
    return dom._connection


def _faults(conn) -> tuple[set, set]:
    return (getattr(conn, 'refuse_attach', set()),
            getattr(conn, 'stuck_macs', set()))


def _live_aliases(dom) -> set:
    root = ET.fromstring(dom.XMLDesc(0))
    return {a.get('name') for a in root.iter('alias')}


def _hostdev_source(iface: ET.Element) -> str | None:
    return pci.source_address(iface)


class FakeLibvirtGaps(fixtures.Fixture):
    """Patch fakelibvirt's classes for the duration of a test."""

    def _setUp(self):
        orig_attach = fakelibvirt.Domain.attachDevice
        orig_detach_flags = fakelibvirt.Domain.detachDeviceFlags
        orig_xml = fakelibvirt.Domain.XMLDesc
        orig_parse = fakelibvirt.Domain._parse_definition

        def parse_definition(dom, xml):
            definition = orig_parse(dom, xml)
            nics = definition.get('devices', {}).get('nics', [])
            elements = ET.fromstring(xml).findall('./devices/interface')
            for nic, element in zip(nics, elements):
                # vfpool's VFs only: Nova's own direct ports keep the
                # rendering Nova's tests expect.
                if (nic.get('type') == 'hostdev' and
                        nic.get('alias', '').startswith(_VFPOOL_ALIAS)):
                    nic[_HOSTDEV_NIC] = ET.tostring(element,
                                                    encoding='unicode')
            return definition

        def attach_device(dom, xml):
            if not xml.startswith('<interface'):
                return orig_attach(dom, xml)
            iface = ET.fromstring(xml)
            if iface.get('type') == 'hostdev':
                refused, _stuck = _faults(dom._connection)
                source = _hostdev_source(iface)
                if source in refused:
                    dom._connection.__dict__.setdefault(
                        'refused_attempts', []).append(source)
                    raise fakelibvirt.make_libvirtError(
                        fakelibvirt.libvirtError,
                        'internal error: unable to hot-plug VF %s (injected '
                        'by the test)' % source,
                        error_code=fakelibvirt.VIR_ERR_INTERNAL_ERROR,
                        error_domain=fakelibvirt.VIR_FROM_QEMU)
            result = orig_attach(dom, xml)
            if iface.get('type') == 'hostdev':
                dom._def['devices']['nics'][-1][_HOSTDEV_NIC] = xml
            return result

        def detach_device_flags(dom, xml, flags):
            if xml.startswith('<interface'):
                mac = ET.fromstring(xml).find('mac')
                _refused, stuck = _faults(dom._connection)
                if mac is not None and mac.get('address') in stuck:
                    # The guest does not answer the unplug request.
                    return
            before = _live_aliases(dom)
            orig_detach_flags(dom, xml, flags)
            if flags & fakelibvirt.VIR_DOMAIN_AFFECT_LIVE:
                for alias in sorted(before - _live_aliases(dom)):
                    _emit(dom._connection,
                          fakelibvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED,
                          dom, alias)

        def xml_desc(dom, flags):
            text = orig_xml(dom, flags)
            plugged = {nic['mac']: nic[_HOSTDEV_NIC]
                       for nic in dom._def['devices']['nics']
                       if _HOSTDEV_NIC in nic}
            if not plugged:
                return text
            root = ET.fromstring(text)
            devices = root.find('devices')
            for index, iface in enumerate(list(devices)):
                mac = iface.find('mac')
                if (iface.tag != 'interface' or mac is None or
                        mac.get('address') not in plugged):
                    continue
                real = ET.fromstring(plugged[mac.get('address')])
                # libvirt keeps the alias and adds the guest-side address.
                if real.find('alias') is None:
                    real.append(iface.find('alias'))
                guest_address = iface.find('address')
                if guest_address is not None:
                    real.append(guest_address)
                devices.remove(iface)
                devices.insert(index, real)
            return ET.tostring(root, encoding='unicode')

        patches = {
            'Domain.connect': _domain_connect,
            'Domain.attachDevice': attach_device,
            'Domain.detachDeviceFlags': detach_device_flags,
            'Domain.XMLDesc': xml_desc,
            'Domain._parse_definition': parse_definition,
            'Connection.domainEventRegisterAny': _register_any,
            'Connection.domainEventDeregisterAny': _deregister_any,
            'Connection._emit_lifecycle': _emit_lifecycle,
        }
        for name, value in patches.items():
            self.useFixture(fixtures.MonkeyPatch(
                'nova.tests.fixtures.libvirt.' + name, value))


def register_nova_host_events(host: nova_host.Host, conn) -> None:
    """Subscribe a compute's ``Host`` to device events on ``conn``.

    What ``Host._get_new_connection`` does on a real connection (Nova's
    functional base replaces that method, so nothing subscribes).  Events
    then reach the driver's ``emit_event`` the way they do in nova-compute.
    """
    conn.domainEventRegisterAny(
        None, fakelibvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED,
        nova_host.Host._event_device_removed_callback, host)
    conn.domainEventRegisterAny(
        None, fakelibvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVAL_FAILED,
        nova_host.Host._event_device_removal_failed_callback, host)
