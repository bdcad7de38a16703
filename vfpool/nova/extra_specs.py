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

"""Nova API validator of the ``vfpool:`` extra specs.

Registered under Nova's ``nova.api.extra_spec_validators`` entry point
(setup.cfg), so that Nova refuses a flavor extra spec vfpool cannot read
when it is set (HTTP 400 naming the key), rather than every boot of the
flavor failing later.  Nova already refuses any other key of a namespace
it has a validator for; the rule itself is :mod:`vfpool.nova.flavor`'s.
"""

from nova.api.validation.extra_specs import base
from nova import exception as nova_exception

from vfpool.nova import flavor


class VfpoolValidator(base.ExtraSpecValidator):
    """``vfpool:vfs`` checked whole by vfpool's parser."""

    def validate(self, name: str, value: str) -> None:
        try:
            flavor.check_key(name, value)
        except flavor.InvalidSpec as exc:
            raise nova_exception.ValidationError(
                'Validation failed; %s' % exc)


def register() -> list[base.ExtraSpecValidator]:
    return [VfpoolValidator(
        name=flavor.KEY,
        description='The VFs vfpool gives an instance of this flavor: '
                    '<physnet>[:<count>][;vendor=|product=|vlan=|numa='
                    '<value>...], comma-separated requests.',
        value={'type': str,
               'description': 'for instance physnet1:2;vlan=100,physnet2'},
    )]
