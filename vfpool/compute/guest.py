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

"""A VF in a libvirt guest: find it, plug it, unplug it.

Every hook starts from the guest's live XML: :func:`find_vf_interface` is
the one answer to "is this VF in the guest?", so a hook called again
finds the work of its first call done.  :class:`Guests` holds what the
libvirt side needs (the connection, the XML builder, where device events
are awaited) and nothing about migrations.
"""

import threading
import typing

from oslo_config import cfg
from oslo_log import log as logging

from vfpool.compute import events
from vfpool.compute import libvirt_ops
from vfpool.compute import recovery
from vfpool.compute import vf_xml
from vfpool import exception
from vfpool.libvirt_import import libvirt

LOG = logging.getLogger(__name__)

ConnectionArg = typing.Union[libvirt.virConnect,
                             typing.Callable[[], libvirt.virConnect], None]


def label(dom: libvirt.virDomain) -> str:
    """``name (uuid)`` of a domain for messages; never raises."""
    try:
        return '%s (%s)' % (dom.name(), dom.UUIDString())
    except libvirt.libvirtError:
        return '<unknown domain>'


def vf_alias(alloc: dict) -> str:
    """The user alias a VF gets in the guest: ``ua-vf-<mac>``.

    Derived from the MAC, which the VF keeps on every host, so the same
    port has the same alias wherever the guest runs; the PCI address
    stands in for an allocation without a MAC.
    """
    key = alloc.get('mac') or alloc['address']
    return vf_xml.user_alias('vf-' + key.lower())


def kept_alias(info: vf_xml.InterfaceInfo, alloc: dict) -> str:
    """The alias to plug a detached VF back with.

    Its own when it is a user alias; a libvirt-made one (``net1``,
    ``hostdev0``) cannot be asked for, so the VF's :func:`vf_alias`.
    """
    if info.alias and vf_xml.is_user_alias(info.alias):
        return info.alias
    return vf_alias(alloc)


def find_vf_interface(domain_xml: str, alloc: dict
                      ) -> vf_xml.InterfaceInfo | None:
    """The guest interface of an allocation, or None: is the VF in there?

    The one answer to that question for every hook.  A ``hostdev``
    interface is the VF when both its PCI source and its MAC are the
    allocation's (a swapped-out VF carries the same MAC); an allocation
    without a MAC goes by the PCI source alone.  Another interface type (an
    emulated stand-in) has no PCI source and goes by the MAC.  A
    ``<teaming type='persistent'/>`` standby sharing the MAC is never the
    VF (QEMU failover pairs give both halves one MAC).
    """
    mac = alloc.get('mac')
    mac = mac.lower() if mac else None
    address = (alloc.get('address') or '').lower()
    for info in vf_xml.parse_interfaces(domain_xml):
        if info.teaming_type == 'persistent':
            continue
        if info.type == 'hostdev':
            if info.pci_address == address and (mac is None
                                                or info.mac == mac):
                return info
        elif mac is not None and info.mac == mac:
            return info
    return None


def unreachable(instance_uuid: str, error: Exception) -> recovery.AttachFn:
    """An attach that fails every VF: the domain cannot be looked up."""
    def fail(alloc: dict) -> typing.NoReturn:
        raise exception.DeviceAttachFailed(
            address=alloc['address'], domain=instance_uuid,
            reason='domain not found: %s' % error)
    return recovery.AttachFn(plug=fail, plugged=fail)


class Connection:
    """The libvirt connection, opened on first need.

    Given one, a callable returning one, or None to open ``[libvirt]
    connection_uri`` (after starting vfpool's event loop, which only
    reaches connections opened after it).
    """

    def __init__(self, conf: cfg.ConfigOpts, arg: ConnectionArg) -> None:
        self.conf = conf
        self._arg = arg
        self._connection: libvirt.virConnect | None = None
        self._lock = threading.Lock()

    def get(self) -> libvirt.virConnect:
        with self._lock:
            if self._connection is None:
                arg = self._arg
                if arg is None:
                    # Before the connection exists, or no events reach it.
                    events.start_event_loop()
                    uri = self.conf.libvirt.connection_uri
                    LOG.info('Opening libvirt connection %s', uri)
                    self._connection = libvirt.open(uri)
                elif callable(arg):
                    self._connection = arg()
                else:
                    self._connection = arg
            return self._connection


class Guests:
    """Find, plug and unplug VFs in the guests of this host.

    :param xml_builder: builds the ``<interface>`` of a VF.
    :param connection: where a guest is looked up when a hook is not
        handed its domain.
    :param registry: where device events are awaited.
    """

    def __init__(self, conf: cfg.ConfigOpts,
                 xml_builder: vf_xml.VFXMLBuilder,
                 connection: Connection,
                 registry: events.DeviceEventRegistry) -> None:
        self.conf = conf
        self.xml_builder = xml_builder
        self.connection = connection
        self.registry = registry

    def domain(self, instance_uuid: str, domain: typing.Any
               ) -> libvirt.virDomain:
        """``domain`` if given, else the guest of ``instance_uuid`` here."""
        # Nova names libvirt domains by the instance's UUID.
        if domain is not None:
            return domain
        return self.connection.get().lookupByUUIDString(instance_uuid)

    def attach_fn(self, dom: libvirt.virDomain,
                  aliases: dict[str, str] | None = None
                  ) -> recovery.AttachFn:
        """An idempotent attach of one allocation's VF to ``dom``.

        ``aliases`` maps a VF's address to the alias to plug it with
        (what it had before a detach); others get :func:`vf_alias`.
        """
        try:
            teaming = vf_xml.find_persistent_teaming_interface(
                dom.XMLDesc(0))
        except libvirt.libvirtError:
            teaming = None
        teaming_alias = teaming.alias if teaming is not None else None
        name = label(dom)

        def plugged(alloc: dict) -> bool:
            try:
                return find_vf_interface(dom.XMLDesc(0), alloc) is not None
            except (libvirt.libvirtError, exception.InvalidInput) as exc:
                raise exception.DeviceAttachFailed(
                    address=alloc['address'], domain=name,
                    reason='cannot read the live XML: %s' % exc)

        def attach(alloc: dict) -> None:
            alias = (aliases or {}).get(alloc['address']) or vf_alias(alloc)
            try:
                present = find_vf_interface(dom.XMLDesc(0), alloc)
                if present is not None:
                    LOG.info('VF %s (MAC %s) is already attached to domain '
                             '%s as %s', alloc['address'], alloc.get('mac'),
                             name, present.alias)
                    return
                if not alloc.get('mac'):
                    # Made by a server older than RPC 1.2, which did not
                    # assign MACs; libvirt needs one to program the VF.
                    raise exception.InvalidInput(
                        reason='the allocation has no MAC to plug it with')
                device_xml = self.xml_builder(
                    address=alloc['address'], mac=alloc['mac'],
                    vlan=alloc.get('vlan'), alias=alias,
                    teaming_persistent_alias=teaming_alias)
            except (libvirt.libvirtError, exception.InvalidInput) as exc:
                raise exception.DeviceAttachFailed(
                    address=alloc['address'], domain=name, reason=str(exc))
            libvirt_ops.attach_device(dom, device_xml, alias,
                                      address=alloc['address'])
        return recovery.AttachFn(plug=attach, plugged=plugged)

    def detach_vf(self, dom: libvirt.virDomain,
                  info: vf_xml.InterfaceInfo, address: str) -> None:
        """Unplug one VF interface for good, waiting for libvirt's event."""
        if not info.alias:
            raise exception.DeviceDetachFailed(
                alias='<none>', domain=label(dom),
                reason='the interface of VF %s has no alias to wait for '
                       '(is the domain running?)' % address)
        libvirt_ops.detach_device(
            dom, info.xml, info.alias,
            timeout=self.conf.libvirt.device_detach_timeout,
            attempts=self.conf.libvirt.device_detach_attempts,
            registry=self.registry)

    def detach_present(self, dom: libvirt.virDomain, allocs: list[dict],
                       instance_uuid: str, host: str | None) -> None:
        """Unplug those of ``allocs`` the guest has; best effort.

        For VFs that are not the guest's (a rollback's claims, a
        completion's stand-ins): a domain that is gone or not running has
        nothing to unplug, and a VF that will not go is logged, as the
        caller frees its claim anyway.
        """
        if not allocs:
            return
        try:
            if not dom.isActive():
                return
            live = dom.XMLDesc(0)
        except libvirt.libvirtError as exc:
            LOG.info('Destination domain of instance %s is gone (%s): '
                     'nothing to detach', instance_uuid, exc)
            return
        for alloc in allocs:
            info = find_vf_interface(live, alloc)
            if info is None:
                continue
            LOG.info('Detaching VF %s (MAC %s) from instance %s on %s: it '
                     'is not the instance\'s', alloc['address'],
                     alloc.get('mac'), instance_uuid, host)
            try:
                self.detach_vf(dom, info, alloc['address'])
            except exception.DeviceDetachFailed as exc:
                # On a rollback the claim is freed anyway: the driver
                # destroys this domain next, which releases the device.
                LOG.error('Could not detach VF %s from instance %s on %s: '
                          '%s', alloc['address'], instance_uuid, host, exc)
