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

"""Ping one address at a fixed interval; record every lost probe and gap.

Run as a script inside the lab's network namespace (``ip netns exec NS
python prober.py ...``), apart from the busy test process so that the
interval holds.  ICMP echo over a raw socket (root).  Bounded: it stops
after ``--count`` probes or ``--max-seconds``, on SIGTERM/SIGINT or (with
``--until-reply``) at the first reply, then
waits ``--grace`` seconds for late replies and writes its result as JSON
to ``--out``::

    {"sent": N, "received": N, "lost": [seq, ...], "interval": s,
     "outages": [[at, length], ...], "longest_gap": s,
     "first_reply": seq or null}

``longest_gap`` is the longest time between the sending of two
consecutive answered probes (at least one interval; the outage a user
sees).  Probes before the first answered one are not counted (ARP).
Prints ``FIRST-REPLY`` on stdout when the first reply arrives.
Standalone: it imports nothing of vfpool.
"""

import argparse
import json
import os
import select
import signal
import socket
import struct
import threading
import time


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b'\0'
    total = sum(struct.unpack('!%dH' % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xffff)
    total += total >> 16
    return ~total & 0xffff


def _echo(ident: int, seq: int) -> bytes:
    header = struct.pack('!BBHHH', 8, 0, 0, ident, seq)
    payload = b'vfpool-prober'
    csum = _checksum(header + payload)
    return struct.pack('!BBHHH', 8, 0, csum, ident, seq) + payload


def probe(target: str, interval: float, count: int, max_seconds: float,
          grace: float, stop: threading.Event,
          until_reply: bool = False) -> dict:
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW,
                         socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xffff
    sent: dict[int, float] = {}
    answered: set[int] = set()
    first: list[int] = []
    done_sending = threading.Event()

    def receive() -> None:
        deadline = None
        while True:
            if done_sending.is_set():
                deadline = deadline or time.monotonic() + grace
                if time.monotonic() > deadline:
                    return
            ready, _, _ = select.select([sock], [], [], 0.05)
            if not ready:
                continue
            packet = sock.recv(2048)
            ihl = (packet[0] & 0x0f) * 4
            kind, _code, _csum, rid, seq = struct.unpack(
                '!BBHHH', packet[ihl:ihl + 8])
            if kind != 0 or rid != ident or seq not in sent:
                continue
            answered.add(seq)
            if not first:
                first.append(seq)
                print('FIRST-REPLY', flush=True)
                if until_reply:
                    stop.set()

    receiver = threading.Thread(target=receive, daemon=True)
    receiver.start()
    started = time.monotonic()
    for seq in range(min(count, 65536)):
        if stop.is_set() or time.monotonic() - started > max_seconds:
            break
        # A fixed schedule: a late wake-up is not carried into the next.
        due = started + seq * interval
        delay = due - time.monotonic()
        if delay > 0 and stop.wait(delay):
            break
        sent[seq] = time.monotonic()
        try:
            sock.sendto(_echo(ident, seq), (target, 0))
        except OSError:
            pass    # no route or neighbour yet: a lost probe
    done_sending.set()
    receiver.join()
    sock.close()
    return summary(sent, answered, first[0] if first else None, interval)


def summary(sent: dict[int, float], answered: set[int],
            first: int | None, interval: float) -> dict:
    counted = sorted(s for s in sent if first is not None and s >= first)
    lost = [s for s in counted if s not in answered]
    gap = 0.0
    last = None
    for seq in counted:
        if seq in answered:
            if last is not None:
                gap = max(gap, sent[seq] - sent[last])
            last = seq
    if counted and counted[-1] not in answered and last is not None:
        # Still out when the probing stopped.
        gap = max(gap, sent[counted[-1]] - sent[last] + interval)
    return {'sent': len(counted), 'received': len(counted) - len(lost),
            'lost': lost, 'interval': interval,
            'outages': outages(lost, sent, interval),
            'longest_gap': round(max(gap, interval if counted else 0), 4),
            'first_reply': first}


def outages(lost: list[int], sent: dict[int, float],
            interval: float) -> list[list[float]]:
    """[seconds after the first probe, seconds long] of each lost run."""
    runs: list[list[float]] = []
    start = min(sent) if sent else 0
    previous = None
    for seq in lost:
        if previous is not None and seq == previous + 1:
            runs[-1][1] = round(runs[-1][1] + interval, 4)
        else:
            runs.append([round(sent[seq] - sent[start], 3), interval])
        previous = seq
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('target')
    parser.add_argument('--out', required=True)
    parser.add_argument('--interval', type=float, default=0.02)
    parser.add_argument('--count', type=int, default=30000)
    parser.add_argument('--max-seconds', type=float, default=300)
    parser.add_argument('--grace', type=float, default=1.0)
    parser.add_argument('--until-reply', action='store_true',
                        help='stop at the first reply (is it up?)')
    args = parser.parse_args()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    result = probe(args.target, args.interval, args.count,
                   args.max_seconds, args.grace, stop, args.until_reply)
    tmp = args.out + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(result, f)
    os.replace(tmp, args.out)


if __name__ == '__main__':
    main()
