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

"""The shortest history that still fails: delta debugging over operations.

Zeller's ddmin over the operations' numbers: try halves, then the
complement of each part, at finer and finer granularity, keeping any
subset that still shows a violation.  Each try replays the subset from
the same seed (the operations keep their faults), so that the result is
a list of numbers that ``--ops`` replays.  Bounded by ``max_tries``: a
machine that cannot afford more still gets a shorter history.
"""

import typing


def _split(items: list[int], n: int) -> list[list[int]]:
    size, extra = divmod(len(items), n)
    chunks, start = [], 0
    for k in range(n):
        end = start + size + (1 if k < extra else 0)
        chunks.append(items[start:end])
        start = end
    return [c for c in chunks if c]


def ddmin(items: list[int], fails: typing.Callable[[list[int]], bool],
          max_tries: int = 40) -> list[int]:
    """A 1-minimal (within ``max_tries``) failing subset of ``items``."""
    tries = 0
    n = 2
    while len(items) >= 2:
        chunks = _split(items, n)
        candidates = chunks + ([[i for i in items if i not in c]
                                for c in chunks] if n > 2 else [])
        for k, candidate in enumerate(candidates):
            if tries >= max_tries:
                return items
            tries += 1
            if fails(candidate):
                items = candidate
                n = 2 if k < len(chunks) else max(n - 1, 2)
                break
        else:
            if n >= len(items):
                break
            n = min(len(items), 2 * n)
    return items
