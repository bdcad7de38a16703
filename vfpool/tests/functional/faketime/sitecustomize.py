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
