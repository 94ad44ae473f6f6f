"""Pacing of sends per integration, shared by every worker through Redis.

Each send reserves the next free moment in a schedule kept in Redis (a GCRA: the key holds the
moment after the last reservation), then sleeps until that moment. Reservations are spaced evenly
at a little more than 1/rate apart, using Redis's own clock, so whichever worker or host sends, no
second carries more than the limit, and there are no bursts for network jitter to pile up.
"""
from __future__ import annotations

import time

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

# Reservations are this much further apart than 1/rate, so the jitter between a reserved moment
# and the request reaching the provider cannot put one send too many into a provider's second.
SPACING_MARGIN = 0.03
LATE_TOLERANCE = 0.005  # seconds


def interval_us(rate_per_second: float) -> int:
    return round(1_000_000 / rate_per_second * (1 + SPACING_MARGIN))


class Pacer:
    def __init__(self, redis: Redis, prefix: str = "switchboard:pace"):
        self.redis, self.prefix = redis, prefix
        self._reserve = redis.register_script(RESERVE)

    def acquire(self, key: str, rate_per_second: float, *, max_wait: float = 60.0) -> float:
        """Reserve the next moment and sleep until it; return the seconds waited.

        A busy machine can wake a sender late; sent anyway, it would bunch up with the sends
        reserved after it, so a moment missed by more than LATE_TOLERANCE is given up and a new one
        reserved. Raises TimeoutError (reserving nothing) when the schedule is booked beyond max_wait.
        """
        started = time.monotonic()
        while True:
            waited = time.monotonic() - started
            wait_us = int(self._reserve(keys=[f"{self.prefix}:{key}"],
                                        args=[interval_us(rate_per_second), int((max_wait - waited) * 1_000_000)]))
            if wait_us < 0:
                raise TimeoutError(f"no sending slot within {max_wait:g} s")
            if not wait_us:
                return time.monotonic() - started
            moment = time.monotonic() + wait_us / 1_000_000
            time.sleep(wait_us / 1_000_000)
            if time.monotonic() - moment <= LATE_TOLERANCE:
                return time.monotonic() - started
