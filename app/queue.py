"""The Redis connection and the RQ queue, one per app; the drain signal of store-first intake."""
import time

from flask import Flask, current_app
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, SimpleWorker
from rq.job import Job


def redis_connection() -> Redis:
    ext = current_app.extensions
    if "redis" not in ext:
        ext["redis"] = Redis.from_url(current_app.config["REDIS_URL"], socket_connect_timeout=2, socket_timeout=5)
    return ext["redis"]


def task_queue() -> Queue:
    return Queue(current_app.config["RQ_QUEUE"], connection=redis_connection())


DRAIN_FLAG_TTL = 300  # a lost drain job holds its flag at most this long; the sweep drains meanwhile
SIGNAL_HOLDS_FOR = 0.02  # seconds a process relies on having seen a drain flag (see DrainSignal)


class DrainSignal:
    """One process's way of making sure a drain job will read the rows it has stored. One flag in
    Redis stands for "a drain is queued", so a burst queues one job, not one each; and a process
    sends the flag's SET at most once per SIGNAL_HOLDS_FOR: a SET sent at moment t that reaches
    Redis leaves the flag up after t, and whichever drain takes it down then waits SIGNAL_HOLDS_FOR
    (take_down) before it reads: so a row committed before t + SIGNAL_HOLDS_FOR is found
    without a SET of its own. If that SET fails (Redis down), or the flag goes some other way (Redis
    restarted empty), the rows it covered wait for the every-minute sweep like any other."""

    def __init__(self, flag: str, job: str, what: str):
        self.flag, self.job, self.what = flag, job, what  # job: the drain function's dotted path
        self.sent_at = float("-inf")  # time.monotonic() when this process last sent the SET

    def send(self) -> bool:
        """False if Redis is down (the sweep drains)."""
        now = time.monotonic()
        if now - self.sent_at < SIGNAL_HOLDS_FOR:
            return True
        self.sent_at = now
        try:
            if redis_connection().set(self.flag, "1", nx=True, ex=DRAIN_FLAG_TTL):
                task_queue().enqueue(self.job, result_ttl=0, failure_ttl=86400)
        except RedisError:
            self.sent_at = float("-inf")  # the next row tries again
            current_app.logger.warning("Redis unavailable: %s wait for the sweep", self.what)
            return False
        return True

    def take_down(self) -> None:
        """A drain starting: rows stored from now on queue another drain. Then wait until the rows
        stored on the strength of the flag just taken down are committed."""
        try:
            redis_connection().delete(self.flag)
        except RedisError:
            pass
        time.sleep(SIGNAL_HOLDS_FOR)


def drain_signal(flag: str, job: str, what: str) -> DrainSignal:
    """This app's (and process's) signal for `flag`."""
    signals = current_app.extensions.setdefault("drain_signals", {})
    if flag not in signals:
        signals[flag] = DrainSignal(flag, job, what)
    return signals[flag]


class AppWorker(SimpleWorker):
    """A SimpleWorker that runs each job in a fresh app context.

    No fork means no database connection shared across processes; a fresh context per
    job means a fresh session, so one job never sees another's stale objects.
    """

    def __init__(self, *args, app: Flask, **kwargs):
        super().__init__(*args, **kwargs)
        self.app = app

    def execute_job(self, job: Job, queue: Queue):
        with self.app.app_context():
            return super().execute_job(job, queue)
