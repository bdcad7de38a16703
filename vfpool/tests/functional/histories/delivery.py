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

"""The nemesis of the delivery layer, in the client process.

:class:`FaultyClient` stands in for the ``oslo_messaging.RPCClient`` of a
:class:`vfpool.rpcapi.VfpoolAPI`, so that the calls go through the real
API class and the real broker, and only their delivery is changed:

``hold``
    the message is kept back; the caller gets ``MessagingTimeout`` (as
    after its timeout), and the message is sent ``delay`` steps later:
    a late message, whose answer nobody waits for.
``dup``
    sent and answered; a copy is sent again ``delay`` steps later.
``drop``
    sent, the server acts, the reply is lost: ``MessagingTimeout``.
``reorder``
    held until the next call of anybody has been delivered, then sent.
``kill``
    sent, and the vfpool-server that may hold it SIGKILLed while it
    works (then started again); the caller sees what it sees.

Nothing in vfpool is changed: the server gets real messages, late,
twice, or never answered.  Every delivery and its answer is logged,
late ones too, for the "one answer per id" check.
"""

import dataclasses
import threading
import time
import typing

import oslo_messaging as messaging

from vfpool import exception


@dataclasses.dataclass
class Delivery:
    """One message that reached the server (or was meant to)."""

    op: int
    method: str
    kwargs: dict
    kind: str               # normal, late, dup, dropped, reorder, kill
    answer: typing.Any = None
    error: str | None = None


@dataclasses.dataclass
class Held:
    due: int                # the step after which it is sent
    op: int
    version: str
    method: str
    kwargs: dict
    kind: str


class Nemesis:
    """Shared by every client of a history: what is held, what was seen."""

    def __init__(self, killer: typing.Callable[[], None] | None = None):
        self.killer = killer
        self.step = 0
        self.held: list[Held] = []
        self.log: list[Delivery] = []
        self.faults: dict[str, int] = {}
        self.calls = 0
        self.lock = threading.Lock()
        self.inner: typing.Any = None

    def count(self, kind: str) -> None:
        with self.lock:
            self.faults[kind] = self.faults.get(kind, 0) + 1

    def send(self, inner, version: str, method: str, kwargs: dict,
             timeout: float | None = None):
        prepared = {} if timeout is None else {'timeout': timeout}
        with self.lock:
            self.calls += 1
        return inner.prepare(version=version, **prepared).call(
            {}, method, **kwargs)

    def record(self, op: int, method: str, kwargs: dict, kind: str,
               answer=None, error: Exception | None = None) -> None:
        name = None
        if error is not None:
            name = type(error).__name__
        with self.lock:
            self.log.append(Delivery(op, method, dict(kwargs), kind,
                                     answer, name))

    def deliver_due(self, inner, final: bool = False) -> None:
        """Send every held message that is due (all of them if final)."""
        due = [h for h in self.held if final or h.due <= self.step]
        self.held = [h for h in self.held if h not in due]
        for held in due:
            try:
                answer = self.send(inner, held.version, held.method,
                                   held.kwargs)
            except (exception.VfpoolException,
                    messaging.MessagingException) as e:
                self.record(held.op, held.method, held.kwargs, held.kind,
                            error=e)
            else:
                self.record(held.op, held.method, held.kwargs, held.kind,
                            answer)


class FaultyClient:
    """An RPCClient whose calls meet the faults planned for them.

    ``plan`` maps the ordinal of a call (0 for the first this client
    makes) to ``[kind, delay]``.
    """

    def __init__(self, inner, nemesis: Nemesis, op: int, plan: dict):
        self.inner = inner
        self.nemesis = nemesis
        self.op = op
        self.plan = {int(k): v for k, v in plan.items()}
        self.ordinal = 0

    def can_send_version(self, version: str) -> bool:
        return self.inner.can_send_version(version)

    def prepare(self, version: str, timeout: float | None = None):
        return _Prepared(self, version, timeout)

    def call(self, version: str, timeout, method: str, kwargs: dict):
        n = self.ordinal
        self.ordinal += 1
        kind, delay = self.plan.get(n, (None, 0))
        nemesis = self.nemesis
        if kind is not None:
            nemesis.count(kind)
        if kind in ('hold', 'reorder'):
            nemesis.held.append(Held(
                nemesis.step + (delay if kind == 'hold' else 1), self.op,
                version, method, dict(kwargs),
                'late' if kind == 'hold' else 'reorder'))
            raise messaging.MessagingTimeout(
                'held by the nemesis: %s' % method)
        if kind == 'kill' and nemesis.killer is not None:
            return self._call_and_kill(version, timeout, method, kwargs)
        try:
            answer = nemesis.send(self.inner, version, method, kwargs,
                                  timeout)
        except Exception as e:
            nemesis.record(self.op, method, kwargs, 'normal', error=e)
            raise
        nemesis.record(self.op, method, kwargs,
                       'dropped' if kind == 'drop' else 'normal', answer)
        if kind == 'dup':
            nemesis.held.append(Held(nemesis.step + delay, self.op, version,
                                     method, dict(kwargs), 'dup'))
        if kind == 'drop':
            raise messaging.MessagingTimeout(
                'reply dropped by the nemesis: %s' % method)
        return answer

    def _call_and_kill(self, version, timeout, method, kwargs):
        result: dict = {}

        def run():
            try:
                result['answer'] = self.nemesis.send(
                    self.inner, version, method, kwargs, timeout)
            except Exception as e:
                result['error'] = e
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        time.sleep(0.02)
        self.nemesis.killer()
        thread.join((timeout or 60) + 30)
        if 'error' in result:
            self.nemesis.record(self.op, method, kwargs, 'kill',
                                error=result['error'])
            raise result['error']
        if 'answer' not in result:
            raise messaging.MessagingTimeout('no answer after a kill')
        self.nemesis.record(self.op, method, kwargs, 'kill',
                            result['answer'])
        return result['answer']


class _Prepared:
    def __init__(self, client: FaultyClient, version: str,
                 timeout: float | None):
        self.client = client
        self.version = version
        self.timeout = timeout

    def call(self, ctxt, method: str, **kwargs):
        return self.client.call(self.version, self.timeout, method, kwargs)
