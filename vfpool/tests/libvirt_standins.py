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

"""In-memory stand-ins for libvirt's connection and domain.

Shared by the compute plugin's unit tests and the plugin benchmark
(tools/bench/plugin.py): both need a domain that plugs and unplugs
devices and delivers device events without a libvirtd.
"""

import itertools
import uuid
from xml.etree import ElementTree as ET

import libvirt

from vfpool.compute import vf_xml

_LIVE = libvirt.VIR_DOMAIN_AFFECT_LIVE
_CONFIG = libvirt.VIR_DOMAIN_AFFECT_CONFIG


def device_alias(device_xml: str) -> str | None:
    alias = ET.fromstring(device_xml).find('alias')
    return alias.get('name') if alias is not None else None


def libvirt_error(message: str) -> libvirt.libvirtError:
    # libvirtError picks up the thread's last libvirt error, if any.
    libvirt.virResetLastError()
    return libvirt.libvirtError(message)


class StandInConnection:
    """The event half of ``libvirt.virConnect``: callbacks by id."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self.callbacks: dict[int, tuple] = {}

    def domainEventRegisterAny(self, dom, event_id, callback, opaque):
        callback_id = next(self._ids)
        self.callbacks[callback_id] = (event_id, callback, opaque)
        return callback_id

    def domainEventDeregisterAny(self, callback_id):
        self.callbacks.pop(callback_id, None)

    def emit(self, dom, event_id: int, alias: str) -> None:
        for ev, callback, opaque in list(self.callbacks.values()):
            if ev == event_id:
                callback(self, dom, alias, opaque)


class StandInDomain:
    """A stand-in for ``libvirt.virDomain`` with devices kept in memory.

    ``attach_failures``: how many attach calls fail before they succeed.
    ``refused_addresses``: VF PCI addresses whose hostdev never attaches.
    ``stuck_aliases``: devices the "guest" never releases (no event).
    ``lost_replies``: how many attach calls plug the device and then fail
    as a dropped connection does (the caller cannot tell it worked);
    with ``stays_down`` the connection does not come back: every later
    call that would reach libvirtd fails too.
    ``on_attach``: called at the start of every attach call.
    """

    def __init__(self, conn: StandInConnection, interfaces=(),
                 attach_failures: int = 0, refused_addresses=(),
                 stuck_aliases=(), lost_replies: int = 0,
                 stays_down: bool = False, on_attach=None) -> None:
        self.conn = conn
        self.uuid = str(uuid.uuid4())
        self.live = list(interfaces)
        self.config = list(interfaces)
        self.attach_failures = attach_failures
        self.refused_addresses = set(refused_addresses)
        self.stuck_aliases = set(stuck_aliases)
        self.lost_replies = lost_replies
        self.stays_down = stays_down
        self.on_attach = on_attach
        self.down = False
        self.attach_calls: list[str] = []
        self.detach_calls: list[tuple[str, int]] = []

    def _reach_libvirtd(self) -> None:
        if self.down:
            raise libvirt_error('stand-in: Cannot write data: Broken pipe')

    def UUIDString(self) -> str:
        return self.uuid

    def name(self) -> str:
        return 'stand-in-' + self.uuid[:8]

    def connect(self) -> StandInConnection:
        return self.conn

    def isActive(self) -> int:
        self._reach_libvirtd()
        return 1

    def isPersistent(self) -> int:
        self._reach_libvirtd()
        return 1

    def XMLDesc(self, flags: int = 0) -> str:
        self._reach_libvirtd()
        devices = (self.config if flags & libvirt.VIR_DOMAIN_XML_INACTIVE
                   else self.live)
        return ('<domain type="qemu"><name>%s</name><uuid>%s</uuid>'
                '<devices>%s</devices></domain>'
                % (self.name(), self.uuid, ''.join(devices)))

    def aliases(self, inactive: bool = False) -> set:
        return vf_xml.device_aliases(self.XMLDesc(
            libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0))

    def attachDeviceFlags(self, device_xml: str, flags: int) -> int:
        if self.on_attach is not None:
            self.on_attach()
        self._reach_libvirtd()
        self.attach_calls.append(device_xml)
        if self.attach_failures > 0:
            self.attach_failures -= 1
            raise libvirt_error('stand-in: attach refused')
        infos = vf_xml.parse_interfaces(
            '<domain><devices>%s</devices></domain>' % device_xml)
        if infos and infos[0].pci_address in self.refused_addresses:
            raise libvirt_error('stand-in: VF %s is broken'
                                % infos[0].pci_address)
        alias = device_alias(device_xml)
        if flags & _LIVE:
            if alias in self.aliases():
                raise libvirt_error('non unique alias detected: %s' % alias)
            self.live.append(device_xml)
            self.conn.emit(self, libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_ADDED,
                           alias)
        if flags & _CONFIG:
            self.config.append(device_xml)
        if self.lost_replies > 0:
            self.lost_replies -= 1
            self.down = self.stays_down
            raise libvirt_error('stand-in: End of file while reading '
                                'data: Input/output error')
        return 0

    def detachDeviceFlags(self, device_xml: str, flags: int) -> int:
        self._reach_libvirtd()
        alias = device_alias(device_xml)
        self.detach_calls.append((alias, flags))
        if flags & _CONFIG:
            self.config = [d for d in self.config if device_alias(d) != alias]
        if flags & _LIVE and alias not in self.stuck_aliases:
            self.live = [d for d in self.live if device_alias(d) != alias]
            self.conn.emit(self, libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED,
                           alias)
        return 0
