"""Periodic jobs for `rq cron app/cron_config.py` (run by scripts/run.sh).

Loaded without an app: it only names the jobs; the worker runs them in its app context.
"""
import os

from rq import cron

from app.jobs.maintenance import expire_stuck_tests, sweep
from app.jobs.meta_tokens import check_meta_tokens

QUEUE = os.environ.get("RQ_QUEUE", "switchboard")

cron.register(expire_stuck_tests, QUEUE, interval=300, name="expire-stuck-tests")
cron.register(sweep, QUEUE, interval=60, name="sweep-pending-webhooks-and-messages")
cron.register(check_meta_tokens, QUEUE, cron="17 4 * * *", name="meta-token-care")  # daily, 04:17 server time
