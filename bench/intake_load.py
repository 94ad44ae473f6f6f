"""What bench/webhook_intake.py and bench/lead_intake.py share: the app and the bare Flask endpoint
served by gunicorn as scripts/run.sh serves the app, loaded in turns by the same HTTP clients, and
the figures printed the same way."""
from __future__ import annotations

import itertools
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = ["--workers", "2", "--threads", "4"]  # as scripts/run.sh serves the app
BARE = ("bare Flask endpoint", "bench.bare_app:app")
# gunicorn's workers each accept their own share of connections, and a keep-alive connection stays
# with the worker that accepted it: 8 connections kept for a whole round split 5/3 or 6/2 as often as
# 4/4, which moved one endpoint's rate by a fifth from round to round. A client that connects again
# every so many requests spreads its posts over both workers alike, for either endpoint.
REQUESTS_PER_CONNECTION = 50

# What a client posts next: (path, body, headers, what to remember when it is accepted).
Post = tuple[str, bytes, dict[str, str], Any]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(target: str, env: dict) -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", *GUNICORN, target],
                               cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, port
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"gunicorn {target} did not start")


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    errors: int = 0
    accepted: set = field(default_factory=set)  # what the accepted posts said to remember
    round_rates: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    def add(self, other: Tally) -> None:
        self.latencies += other.latencies
        self.seconds += other.seconds
        self.errors += other.errors
        self.accepted |= other.accepted
        self.round_rates.append(other.rate)


class Connection:
    """A keep-alive HTTP/1.1 connection that sends a request as bytes built beforehand and reads the
    answer's status and body (Content-Length framing, as gunicorn answers). http.client parses every
    answer's headers with the email package: a client built on it spent more CPU per request than the
    bare endpoint, and with the server on the same two cores it set the bare endpoint's rate."""

    def __init__(self, port: int):
        self.socket = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def exchange(self, request: bytes) -> int:
        self.socket.sendall(request)
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            self._receive()
        head, self.buffer = self.buffer[:end], self.buffer[end + 4:]
        length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n")[1:]
                          if line.lower().startswith(b"content-length:")))
        while len(self.buffer) < length:
            self._receive()
        self.buffer = self.buffer[length:]
        return int(head[9:12])

    def _receive(self) -> None:
        chunk = self.socket.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buffer += chunk

    def close(self) -> None:
        self.socket.close()


def request_bytes(path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}",
             *(f"{name}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def load(port: int, seconds: float, clients: int, posts: Callable[[int], Iterator[Post]]) -> Tally:
    """`clients` threads posting what posts(client number) yields, for `seconds`, each over a
    keep-alive connection renewed every REQUESTS_PER_CONNECTION requests. Each client builds its
    next requests before the clock starts (their bodies, signatures and bytes), so that the
    load costs the shared cores as little as it can."""
    tally = Tally()
    lock = threading.Lock()
    enough = int(seconds * 1000)  # per client: 8 clients could send 8,000 a second; the fastest seen was 4,800
    began = [0.0]
    ready = threading.Barrier(clients, action=lambda: began.__setitem__(0, time.monotonic()))

    def client(number: int):
        prepared = [(request_bytes(path, body, headers), remember)
                    for (path, body, headers, remember) in itertools.islice(posts(number), enough)]
        mine = Tally()
        ready.wait()
        connection = None
        stop = began[0] + seconds
        for sent, (request, remember) in enumerate(prepared):
            if time.monotonic() >= stop:
                break
            if connection is None or sent % REQUESTS_PER_CONNECTION == 0:
                if connection is not None:
                    connection.close()
                connection = Connection(port)
            started = time.perf_counter()
            try:
                status = connection.exchange(request)
            except OSError:  # a connection the server dropped: an error, and a new connection
                mine.errors += 1
                connection.close()
                connection = None
                continue
            mine.latencies.append(time.perf_counter() - started)
            if 200 <= status < 300:
                mine.accepted.add(remember)
            else:
                mine.errors += 1
        else:
            mine.errors += 1  # it ran out of prepared requests: counted, so the figures are not trusted
        if connection is not None:
            connection.close()
        with lock:
            tally.latencies += mine.latencies
            tally.errors += mine.errors
            tally.accepted |= mine.accepted

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    tally.seconds = time.monotonic() - began[0]
    return tally


def take_turns(ports: dict[str, int], rounds: int, seconds: float, clients: int,
               posts: dict[str, Callable[[int, int], Iterator[Post]]]) -> dict[str, Tally]:
    """Load each endpoint in turn, `rounds` times in alternating order, `seconds` in all for each,
    so that other load on the machine weighs on both alike. posts[name](round, client number)
    gives what a client posts in that round; a short warm-up (round -1) comes first."""
    names = list(ports)
    tallies = {name: Tally() for name in names}
    for name in names:  # its rates are not counted; what it posted is kept, so it counts as posted
        tallies[name].accepted = load(ports[name], 2, clients, lambda number, name=name: posts[name](-1, number)).accepted
    for round_number in range(rounds):
        for name in (names if round_number % 2 == 0 else names[::-1]):
            tallies[name].add(load(ports[name], seconds / rounds, clients,
                                   lambda number, name=name: posts[name](round_number, number)))
    return tallies


def report(tallies: dict[str, Tally], measured: str, target: float) -> None:
    """The table of rates, p99 and errors; the ratio of `measured` to the bare endpoint, overall and
    the spread of the rounds' ratios (each round beside the other endpoint's round next to it)."""
    print(f"{'endpoint':<24}{'req/s':>10}{'p99 ms':>10}{'errors':>8}")
    for name, tally in tallies.items():
        latencies = sorted(tally.latencies)
        print(f"{name:<24}{tally.rate:>10.0f}{latencies[int(len(latencies) * 0.99) - 1] * 1000:>10.1f}"
              f"{tally.errors:>8}")
    bare, ours = tallies[BARE[0]], tallies[measured]
    by_round = [o / b for o, b in zip(ours.round_rates, bare.round_rates)]
    print()
    print(f"ratio {ours.rate / bare.rate:.2f} (target >= {target:g}); by round {min(by_round):.2f} to "
          f"{max(by_round):.2f}, median {statistics.median(by_round):.2f}")
