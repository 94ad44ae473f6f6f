"""Pacing of sends per integration, shared by every worker through Redis.

A sliding-window log: each send takes a slot in a sorted set scored by Redis's own clock,
and waits while the window already holds `limit` slots. No window of the given length
ever holds more slots than the limit, whichever worker or host took them.
"""
from __future__ import annotations

import math
import time
import uuid

from redis import Redis

ACQUIRE = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1000)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return tonumber(oldest[2]) + window - now
"""


def window_for(rate_per_second: float) -> tuple[int, int]:
    """(slots, window in microseconds) giving `rate_per_second`: 80/s is 80 per second,
    0.5/s is 1 per two seconds, 2.5/s is 2 per 0.8 s."""
    slots = max(1, math.floor(rate_per_second))
    return slots, round(1_000_000 * slots / rate_per_second)


# Added to every window so that the scheduling jitter between taking a slot and the request
# leaving (and reaching the provider) cannot squeeze one more send into a provider's second.
SAFETY_MARGIN_US = 30_000


class Pacer:
    def __init__(self, redis: Redis, prefix: str = "switchboard:pace"):
        self.redis, self.prefix = redis, prefix
        self._acquire = redis.register_script(ACQUIRE)

    def acquire(self, key: str, rate_per_second: float, *, max_wait: float = 60.0) -> float:
        """Block until a slot is free; return the seconds waited. Raises TimeoutError past max_wait."""
        slots, window = window_for(rate_per_second)
        member, waited = uuid.uuid4().hex, 0.0
        while True:
            wait_us = int(self._acquire(keys=[f"{self.prefix}:{key}"], args=[slots, window + SAFETY_MARGIN_US, member]))
            if wait_us <= 0:
                return waited
            pause = wait_us / 1_000_000
            if waited + pause > max_wait:
                raise TimeoutError(f"no sending slot within {max_wait:g} s")
            time.sleep(pause)
            waited += pause
