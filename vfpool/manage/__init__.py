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

"""The command categories of ``vfpool-manage`` (see vfpool/cmd/manage.py).

Each module adds its parsers to the oslo.config sub-command and talks to
the database directly, like ``nova-manage``: operators can inspect and
repair the inventory even when no vfpool-server runs.
"""
