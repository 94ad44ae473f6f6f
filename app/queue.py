"""The Redis connection and the RQ queue, one per app."""
from flask import Flask, current_app
from redis import Redis
from rq import Queue, SimpleWorker
from rq.job import Job


def redis_connection() -> Redis:
    ext = current_app.extensions
    if "redis" not in ext:
        ext["redis"] = Redis.from_url(current_app.config["REDIS_URL"], socket_connect_timeout=2, socket_timeout=5)
    return ext["redis"]


def task_queue() -> Queue:
    return Queue(current_app.config["RQ_QUEUE"], connection=redis_connection())


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
