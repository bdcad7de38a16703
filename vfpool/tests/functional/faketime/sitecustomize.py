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

"""For Python run under libfaketime with FAKETIME_DONT_FAKE_MONOTONIC=1.

libfaketime 0.9.10 (Debian 12) fails the absolute ``CLOCK_MONOTONIC``
``clock_nanosleep`` that Python 3.11's ``time.sleep`` makes with EINVAL;
waiting on an event sleeps on the same monotonic clock and works.  Only
``vfpool.tests.functional.server.test_clocks`` puts this on a server's
``PYTHONPATH``.
"""

import threading
import time


def _sleep(seconds: float) -> None:
    if seconds > 0:
        threading.Event().wait(seconds)


time.sleep = _sleep
