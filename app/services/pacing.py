"""Pacing of sends per integration, shared by every worker through Redis, on Redis's clock.

A provider counts requests as they arrive; we control when they leave. Two steps, each one
atomic Lua script:

1. reserve: each send takes the next free moment of an evenly spaced schedule (a GCRA: the key
   holds the moment after the last reservation) and sleeps until it. The spacing is a little wider
   than 1/rate, so whichever worker or host sends, sends leave one at a time, not in bursts.
2. depart: right before the request leaves, the send is checked against a log of the moments sends
   actually left (a sorted set): it leaves only if the last WINDOW (1 s and SPACING_MARGIN more, for
   `rate` sends) holds fewer than `rate` departures and the previous one left at least half an
   interval ago; otherwise it waits and asks again. So a sender that woke late neither loses its turn
   nor crowds the sends after it.

The guarantee: no window of 1 s + SPACING_MARGIN ever holds more than `rate` departures. A provider
therefore never sees more than `rate` arrivals in a second as long as the time from departure to
arrival varies by less than SPACING_MARGIN seconds (30 ms) between requests.
"""
from __future__ import annotations

import gc
import math
import time
import uuid
from contextlib import contextmanager

from redis import Redis

RESERVE = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local interval, max_wait = tonumber(ARGV[1]), tonumber(ARGV[2])
local next_free = tonumber(redis.call('GET', KEYS[1]) or '0')
if next_free < now then next_free = now end
local wait = next_free - now
if wait > max_wait then return -1 end
redis.call('SET', KEYS[1], next_free + interval, 'PX', math.ceil((wait + interval) / 1000) + 1000)
return wait
"""

# Returns {wait, now}: wait 0 means this send left at `now` (µs, Redis's clock) and is in the log.
DEPART = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local window, capacity, min_gap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local wait = 0
if redis.call('ZCARD', KEYS[1]) >= capacity then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  wait = tonumber(oldest[2]) + window - now
end
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if last[2] then wait = math.max(wait, tonumber(last[2]) + min_gap - now) end
if wait > 0 then return {wait, now} end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1000)
return {0, now}
"""

# Sends are this much further apart than 1/rate, and the departure log's window this much longer than
# a second: the room for arrivals to drift apart from departures.
SPACING_MARGIN = 0.03


def interval_us(rate_per_second: float) -> int:
    return round(1_000_000 / rate_per_second * (1 + SPACING_MARGIN))


def departure_limit(rate_per_second: float) -> tuple[int, int]:
    """(capacity, window µs): at most `capacity` departures in any window of that length. For 80/s:
    80 in 1.03 s; below 1/s, one per 1/rate (+ margin)."""
    capacity = max(1, math.floor(rate_per_second))
    return capacity, round(capacity / rate_per_second * 1_000_000 * (1 + SPACING_MARGIN))


@contextmanager
def collection_paused():
    """No garbage collection inside: a collection (tens of ms in a worker holding ORM objects) between
    the departure the pacer logged and the request leaving would make it arrive late, next to the
    sends after it. Nothing in the span allocates much, so the pause costs no memory to speak of."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class Pacer:
    def __init__(self, redis: Redis, prefix: str = "switchboard:pace"):
        self.redis, self.prefix = redis, prefix
        self._reserve = redis.register_script(RESERVE)
        self._depart = redis.register_script(DEPART)

    def acquire(self, key: str, rate_per_second: float, *, max_wait: float = 60.0) -> float:
        """Wait for this send's turn; return the moment it may leave (seconds, Redis's clock).
        Call it when everything else is ready, so that the request leaves right after.

        Raises TimeoutError when the schedule is booked beyond max_wait (reserving nothing) or the
        departure log keeps it waiting past max_wait."""
        deadline = time.monotonic() + max_wait
        wait_us = int(self._reserve(keys=[f"{self.prefix}:{key}"],
                                    args=[interval_us(rate_per_second), int(max_wait * 1_000_000)]))
        if wait_us < 0:
            raise TimeoutError(f"no sending slot within {max_wait:g} s")
        time.sleep(wait_us / 1_000_000)
        while True:
            wait_us, now_us = self.depart(key, rate_per_second)
            if not wait_us:
                return now_us / 1_000_000
            if time.monotonic() + wait_us / 1_000_000 > deadline:
                raise TimeoutError(f"no departure within {max_wait:g} s")
            time.sleep(wait_us / 1_000_000)

    def depart(self, key: str, rate_per_second: float) -> tuple[int, int]:
        """(0, now µs) when a send may leave now, and is logged as having left; (µs to wait, now µs) if not."""
        capacity, window_us = departure_limit(rate_per_second)
        wait_us, now_us = self._depart(keys=[f"{self.prefix}:{key}:departed"],
                                       args=[window_us, capacity, interval_us(rate_per_second) // 2,
                                             uuid.uuid4().hex])
        return int(wait_us), int(now_us)
