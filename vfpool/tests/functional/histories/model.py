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

"""What the clients know: each guest, and what it has plugged.

The clients update it from the answers they got, exactly as a compute
would act on them: a VF is plugged into a guest at the PCI address the
answer names, on the host where the guest runs.  It is the ground truth
the tables are checked against (:mod:`.invariants`).
"""

import dataclasses
import uuid


@dataclasses.dataclass
class Guest:
    name: str
    uuid: str
    vfs: int                    # what its flavor asks for
    host: str | None = None     # where it runs; None: not (yet, or gone)
    alive: bool = False         # booted and not deleted
    #: (host, PCI address) of every VF plugged into the guest.
    plugged: set = dataclasses.field(default_factory=set)
    #: Why the guest may lack VFs or still hold some: typed errors and
    #: calls given up, as Nova would record an instance fault.
    failures: list = dataclasses.field(default_factory=list)
    #: Nova's request-id generation (bumped when VFs go and it lives on).
    generation: int = 0
    deleted: bool = False
    #: VFs may be held for it until its release is answered.
    release_pending: bool = False


class Model:
    def __init__(self, seed: int):
        self.seed = seed
        self.guests: dict[str, Guest] = {}
        #: migration uuid -> the op that owns it; None when it ended.
        self.migrations: dict[str, dict] = {}

    def guest(self, name: str, vfs: int = 0) -> Guest:
        if name not in self.guests:
            self.guests[name] = Guest(name, str(uuid.uuid5(
                uuid.NAMESPACE_URL, 'vfpool-history/%d/%s'
                % (self.seed, name))), vfs)
        return self.guests[name]

    def by_uuid(self, instance_uuid: str) -> Guest | None:
        for guest in self.guests.values():
            if guest.uuid == instance_uuid:
                return guest
        return None

    def plugged_by(self) -> dict:
        """(host, address) -> the names of the live guests that have it."""
        found: dict = {}
        for guest in self.guests.values():
            if guest.alive:
                for key in guest.plugged:
                    found.setdefault(key, []).append(guest.name)
        return found
