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

"""Timing calls over concurrent callers, interleaved between inventories."""

import threading
import time

from bench.results import Result


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0)
            for i in range(parts)]


def run_concurrent(callers: int, per_caller: list, fn) -> float:
    """Run ``fn(caller, items)`` in ``callers`` threads; wall seconds."""
    if callers == 1:
        start = time.perf_counter()
        fn(0, per_caller[0])
        return time.perf_counter() - start
    barrier = threading.Barrier(callers + 1)
    errors = []

    def worker(c):
        try:
            barrier.wait()
            fn(c, per_caller[c])
        except BaseException as e:  # noqa: B902 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(c,), daemon=True)
               for c in range(callers)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if errors:
        raise errors[0]
    return wall


def measure_steps(result: Result | None, callers: int, calls: int,
                  warmup: int, call, chunk: int = 64):
    """Measure ``call()`` (no arguments) ``calls`` times over callers.

    A generator: it yields after the warm-up and after every ``chunk``
    measured calls, so that phases on two inventories can be
    interleaved (see :func:`interleave`).
    """
    def loop(record):
        def body(c, n):
            for _ in range(n):
                t0 = time.perf_counter()
                try:
                    call()
                except Exception as e:
                    if record:
                        result.record_error(e)
                    continue
                if record:
                    result.latencies.append(time.perf_counter() - t0)
        return body

    run_concurrent(callers, _split(max(warmup, callers), callers),
                   loop(False))
    yield
    chunk = max(chunk, callers)
    done = 0
    while result is not None and done < calls:
        n = min(chunk, calls - done)
        done += n
        result.calls += n
        result.wall += run_concurrent(callers, _split(n, callers),
                                      loop(True))
        yield


def measure_simple(result: Result | None, callers: int, calls: int,
                   warmup: int, call) -> Result | None:
    for _ in measure_steps(result, callers, calls, warmup, call):
        pass
    return result


def interleave(steppers: list) -> None:
    """Run generators step by step, A B B A A B ..., until all are done.

    Background load that comes and goes then hits every inventory alike.
    """
    active = list(steppers)
    cycle = 0
    while active:
        order = active if cycle % 2 == 0 else active[::-1]
        for gen in list(order):
            try:
                next(gen)
            except StopIteration:
                active.remove(gen)
        cycle += 1
