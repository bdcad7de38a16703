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

"""Typed errors of the vfpool API.

They cross RPC: oslo.messaging rebuilds them on the client as
``cls(*args, **kwargs)``, so every class takes the already formatted
message as its only positional argument plus the keyword arguments it
was formatted from.  Clients list this module in ``allowed_remote_exmods``
and so catch the very same classes the server raised.
"""


class VfpoolException(Exception):
    msg_fmt = 'An unknown error occurred.'

    def __init__(self, message: str | None = None, **kwargs):
        self.kwargs = kwargs
        if message is None:
            try:
                message = self.msg_fmt % kwargs
            except (KeyError, TypeError, ValueError):
                message = self.msg_fmt
        super().__init__(message)

    @property
    def message(self) -> str:
        return str(self)


class InvalidInput(VfpoolException):
    msg_fmt = 'Invalid input: %(reason)s'


class NotFound(VfpoolException):
    msg_fmt = 'Resource could not be found.'


class HostNotFound(NotFound):
    msg_fmt = 'Host %(host)s is not known to vfpool.'


class VFNotFound(NotFound):
    msg_fmt = 'VF %(address)s on host %(host)s could not be found.'


class AllocationNotFound(NotFound):
    msg_fmt = ('Instance %(instance_uuid)s holds no VF %(address)s on host '
               '%(host)s.')


class MigrationNotFound(NotFound):
    msg_fmt = 'Migration %(migration_uuid)s could not be found.'


class NoAvailableVF(VfpoolException):
    msg_fmt = 'No available VF on host %(host)s matches %(request)s.'


class HostDisabled(NoAvailableVF):
    msg_fmt = 'Host %(host)s is disabled and takes no new claims.'


class Conflict(VfpoolException):
    msg_fmt = 'The request conflicts with the current state.'


class MigrationInProgress(Conflict):
    msg_fmt = ('Instance %(instance_uuid)s already has migration '
               '%(migration_uuid)s in flight.')


class MigrationStateConflict(Conflict):
    msg_fmt = ('Migration %(migration_uuid)s is %(state)s; it cannot be '
               '%(action)s.')


class MigrationFenced(MigrationStateConflict):
    """(1.6) The call names a destination or source the migration has not.

    A prepare for a destination the migration left or whose compute gave
    up, or a call whose caller believes in other hosts than the
    migration's: stale, so nothing changed.  A MigrationStateConflict,
    so that code written for that keeps refusing.
    """

    msg_fmt = 'Migration %(migration_uuid)s: %(reason)s; nothing changed.'


class SourcesChanged(Conflict):
    """(1.6) The instance's VFs on the source are not those expected."""

    msg_fmt = ('Instance %(instance_uuid)s holds %(held)s on host '
               '%(host)s, not %(expected)s as the caller expected; nothing '
               'changed.')


class LeaseExpired(Conflict):
    msg_fmt = ('The lease of migration %(migration_uuid)s expired and its '
               'destination VFs are no longer free.')


class RequestConflict(Conflict):
    msg_fmt = ('Request %(request_id)s was already used with other '
               'arguments.')


class RequestReleased(Conflict):
    msg_fmt = ('Request %(request_id)s of instance %(instance_uuid)s was '
               'released; it claims nothing again.')


class VFStateConflict(Conflict):
    msg_fmt = 'VF %(address)s on host %(host)s is %(state)s: %(reason)s'


# Compute-side errors: raised to the compute driver, never sent over RPC.

class DeviceDetachFailed(VfpoolException):
    msg_fmt = ('Device %(alias)s could not be detached from domain '
               '%(domain)s: %(reason)s')


class DeviceAttachFailed(VfpoolException):
    msg_fmt = ('Device for VF %(address)s could not be attached to domain '
               '%(domain)s: %(reason)s')


class ReattachFailed(VfpoolException):
    msg_fmt = ('Instance %(instance_uuid)s runs on %(host)s but its VF '
               'could not be attached there: %(reason)s')


class ServiceError(VfpoolException):
    """An unexpected failure inside the server, already rolled back."""
    msg_fmt = 'vfpool-server could not complete %(method)s: %(reason)s'


# Why a program cannot do its work at all: raised to the console scripts,
# never sent over RPC.  vfpool/cmd/errors.py prints them as one line.

class CannotRun(VfpoolException):
    """The environment, not the request, is wrong; the message says how."""
    msg_fmt = '%(reason)s'


class ConfigInvalid(CannotRun):
    msg_fmt = 'bad configuration: %(option)s%(where)s: %(reason)s'


class DatabaseUrlInvalid(CannotRun):
    msg_fmt = ('bad configuration: [database] connection %(url)s: '
               '%(reason)s')


class DatabaseDriverMissing(CannotRun):
    msg_fmt = ('the database driver for %(url)s is not installed '
               '(%(reason)s): use mysql+pymysql:// or postgresql+psycopg2:// '
               '(vfpool installs their drivers), or install that driver')


class DatabaseUnreachable(CannotRun):
    msg_fmt = 'cannot connect to the database %(url)s: %(reason)s'


class SchemaNotSynced(CannotRun):
    msg_fmt = ('the database schema is at revision %(current)s, this vfpool '
               'needs %(head)s: run vfpool-manage db sync')
