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

"""The libvirt calls of the compute plugin: detach and attach one VF.

Detach is the delicate half.  libvirt only *asks* the guest to release a
PCI device; the guest may take its time, refuse, or never answer (no OS,
hung kernel).  The outcome is reported by a DEVICE_REMOVED or
DEVICE_REMOVAL_FAILED event, so :func:`detach_device` registers a waiter
before asking, re-asks a bounded number of times (as Nova does with
``[libvirt] device_detach_timeout`` and ``device_detach_attempts``) and
raises :class:`~vfpool.exception.DeviceDetachFailed` when the guest never
lets go, so the caller can abort the migration with the VF still in place.
"""

import time

from oslo_log import log as logging

from vfpool.compute import events as vf_events
from vfpool.compute import vf_xml
from vfpool import exception
from vfpool.libvirt_import import libvirt

LOG = logging.getLogger(__name__)

_AFFECT_LIVE = libvirt.VIR_DOMAIN_AFFECT_LIVE
_AFFECT_CONFIG = libvirt.VIR_DOMAIN_AFFECT_CONFIG
# Errors after which asking again cannot help.
_FATAL_ERRORS = frozenset((
    libvirt.VIR_ERR_NO_DOMAIN,
    libvirt.VIR_ERR_OPERATION_INVALID,   # e.g. the domain is not running
    libvirt.VIR_ERR_NO_SUPPORT,
    libvirt.VIR_ERR_CONFIG_UNSUPPORTED,
    libvirt.VIR_ERR_XML_ERROR,
    libvirt.VIR_ERR_INVALID_ARG,
))


def _domain_label(dom: libvirt.virDomain) -> str:
    try:
        return '%s (%s)' % (dom.name(), dom.UUIDString())
    except libvirt.libvirtError:
        return '<unknown domain>'


def _in_live(dom: libvirt.virDomain, alias: str) -> bool:
    if not dom.isActive():
        return False
    return vf_xml.has_device_alias(dom.XMLDesc(0), alias)


def _in_config(dom: libvirt.virDomain, alias: str) -> bool:
    if not dom.isPersistent():
        return False
    return vf_xml.has_device_alias(
        dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), alias)


def detach_device(dom: libvirt.virDomain, device_xml: str, alias: str,
                  timeout: float, attempts: int, *,
                  registry: vf_events.DeviceEventRegistry | None = None
                  ) -> None:
    """Detach the device ``alias`` (described by ``device_xml``) for good.

    Each attempt calls ``detachDeviceFlags`` (LIVE, plus CONFIG while the
    persistent definition still has the device) and then waits up to
    ``timeout`` seconds for DEVICE_REMOVED; DEVICE_REMOVAL_FAILED ends the
    attempt early.  A device that is already gone counts as detached.  Note
    that libvirt itself blocks in ``detachDeviceFlags`` for a few seconds
    (5 s for QEMU on x86) when the guest does not answer at once, so a
    non-cooperative guest costs about ``attempts * (5 + timeout)`` seconds.

    If every attempt fails the device is still plugged; its copy in the
    persistent definition, removed by the first attempt, is put back so the
    domain is left as it was found.  Raises DeviceDetachFailed.
    """
    if attempts < 1 or timeout <= 0:
        raise exception.InvalidInput(
            reason='detach needs attempts >= 1 and timeout > 0, got %r, %r'
                   % (attempts, timeout))
    registry = registry or vf_events.default_registry()
    label = _domain_label(dom)
    try:
        registry.watch(dom.connect())
        uuid = dom.UUIDString()
        was_in_config = _in_config(dom, alias)
        if not _in_live(dom, alias) and not was_in_config:
            LOG.info('Device %s is not attached to domain %s: nothing to '
                     'detach', alias, label)
            return
    except libvirt.libvirtError as exc:
        raise exception.DeviceDetachFailed(alias=alias, domain=label,
                                           reason=str(exc))

    removed_from_config = False
    with registry.expect(uuid, alias, (vf_events.DEVICE_REMOVED,
                                       vf_events.DEVICE_REMOVAL_FAILED)
                         ) as waiter:
        for attempt in range(1, attempts + 1):
            try:
                in_live = _in_live(dom, alias)
                in_config = _in_config(dom, alias)
            except libvirt.libvirtError as exc:
                raise exception.DeviceDetachFailed(alias=alias, domain=label,
                                                   reason=str(exc))
            if not in_live:
                if in_config:
                    _detach_config_only(dom, device_xml, alias, label)
                LOG.info('Device %s is gone from domain %s', alias, label)
                return
            flags = _AFFECT_LIVE | (_AFFECT_CONFIG if in_config else 0)
            LOG.info('Detaching device %s from domain %s (attempt %d of %d, '
                     'flags %d)', alias, label, attempt, attempts, flags)
            started = time.monotonic()
            try:
                dom.detachDeviceFlags(device_xml, flags)
                removed_from_config |= in_config
            except libvirt.libvirtError as exc:
                if not _in_live_quiet(dom, alias):
                    LOG.info('Device %s is gone from domain %s (%s)',
                             alias, label, exc)
                    return
                if exc.get_error_code() in _FATAL_ERRORS:
                    _restore_config(dom, device_xml, alias, label,
                                    removed_from_config)
                    raise exception.DeviceDetachFailed(
                        alias=alias, domain=label, reason=str(exc))
                # E.g. "already in the process of unplug": an earlier
                # request may still complete, so keep waiting.
                LOG.warning('Detach request %d for device %s of domain %s '
                            'failed: %s', attempt, alias, label, exc)
            called = time.monotonic()

            if _wait_for_removal(waiter, dom, alias, label, timeout):
                LOG.info('Device %s detached from domain %s on attempt %d '
                         '(%.2f s in the libvirt call, %.2f s waiting)',
                         alias, label, attempt, called - started,
                         time.monotonic() - called)
                if _in_config_quiet(dom, alias):
                    _detach_config_only(dom, device_xml, alias, label)
                return

    _restore_config(dom, device_xml, alias, label, removed_from_config)
    reason = ('the guest did not release it after %d attempt(s) of %s s'
              % (attempts, timeout))
    LOG.warning('Giving up detaching device %s from domain %s: %s',
                alias, label, reason)
    raise exception.DeviceDetachFailed(alias=alias, domain=label,
                                       reason=reason)


def _wait_for_removal(waiter: vf_events.DeviceEventWaiter,
                      dom: libvirt.virDomain, alias: str, label: str,
                      timeout: float) -> bool:
    """Wait one attempt's worth; True once the device is gone."""
    event = waiter.wait(timeout)
    if event == vf_events.DEVICE_REMOVED:
        return True
    if event == vf_events.DEVICE_REMOVAL_FAILED:
        LOG.warning('The guest refused to release device %s of domain %s '
                    '(DEVICE_REMOVAL_FAILED)', alias, label)
        return False
    # No event: either the guest is slow or the event was missed (e.g. a
    # connection opened before the event loop started); trust the XML.
    if not _in_live_quiet(dom, alias):
        LOG.info('Device %s is gone from domain %s without an event',
                 alias, label)
        return True
    LOG.info('No DEVICE_REMOVED for device %s of domain %s within %s s',
             alias, label, timeout)
    return False


def _in_live_quiet(dom: libvirt.virDomain, alias: str) -> bool:
    try:
        return _in_live(dom, alias)
    except libvirt.libvirtError:
        return True


def _in_config_quiet(dom: libvirt.virDomain, alias: str) -> bool:
    try:
        return _in_config(dom, alias)
    except libvirt.libvirtError:
        return False


def _detach_config_only(dom: libvirt.virDomain, device_xml: str, alias: str,
                        label: str) -> None:
    try:
        dom.detachDeviceFlags(device_xml, _AFFECT_CONFIG)
        LOG.info('Removed device %s from the persistent definition of '
                 'domain %s', alias, label)
    except libvirt.libvirtError as exc:
        raise exception.DeviceDetachFailed(alias=alias, domain=label,
                                           reason=str(exc))


def _restore_config(dom: libvirt.virDomain, device_xml: str, alias: str,
                    label: str, removed_from_config: bool) -> None:
    """Put back the persistent copy of a device that is still plugged."""
    if not removed_from_config or _in_config_quiet(dom, alias):
        return
    try:
        dom.attachDeviceFlags(device_xml, _AFFECT_CONFIG)
        LOG.info('Restored device %s in the persistent definition of domain '
                 '%s after the failed detach', alias, label)
    except libvirt.libvirtError as exc:
        LOG.error('Device %s is still attached to domain %s but could not '
                  'be put back in its persistent definition: %s',
                  alias, label, exc)


def attach_device(dom: libvirt.virDomain, device_xml: str, alias: str, *,
                  address: str | None = None) -> None:
    """Hot-plug ``device_xml`` live (and persistently if the domain is).

    libvirt's attach is synchronous, so success is checked by finding
    ``alias`` in the live XML afterwards.  ``address`` (the VF's PCI
    address) only enriches the error; it is read from ``device_xml`` when
    not given.  Raises DeviceAttachFailed.
    """
    label = _domain_label(dom)
    if address is None:
        address = _address_for_error(device_xml, alias)
    try:
        flags = _AFFECT_LIVE
        if dom.isPersistent():
            flags |= _AFFECT_CONFIG
        LOG.info('Attaching device %s (VF %s) to domain %s (flags %d)',
                 alias, address, label, flags)
        started = time.monotonic()
        dom.attachDeviceFlags(device_xml, flags)
        present = vf_xml.has_device_alias(dom.XMLDesc(0), alias)
    except libvirt.libvirtError as exc:
        LOG.warning('Attaching device %s to domain %s failed: %s',
                    alias, label, exc)
        raise exception.DeviceAttachFailed(address=address, domain=label,
                                           reason=str(exc))
    if not present:
        raise exception.DeviceAttachFailed(
            address=address, domain=label,
            reason='alias %s is not in the live XML after the attach'
                   % alias)
    LOG.info('Attached device %s to domain %s in %.2f s', alias, label,
             time.monotonic() - started)


def _address_for_error(device_xml: str, alias: str) -> str:
    try:
        infos = vf_xml.parse_interfaces(
            '<domain><devices>%s</devices></domain>' % device_xml)
    except exception.InvalidInput:
        infos = []
    for info in infos:
        if info.pci_address:
            return info.pci_address
    return alias
