"""Periodic jobs for `rq cron app/cron_config.py` (run by scripts/run.sh).

Loaded without an app: it only names the jobs; the worker runs them in its app context.
"""
import os

from rq import cron

from app.jobs.inbox import roll_up_daily_stats, sync_all_conversations, sync_all_templates
from app.jobs.inbox import sweep as sweep_inbox
from app.jobs.maintenance import expire_stuck_tests, sweep
from app.jobs.meta_tokens import check_meta_tokens

QUEUE = os.environ.get("RQ_QUEUE", "switchboard")

cron.register(expire_stuck_tests, QUEUE, interval=300, name="expire-stuck-tests")
cron.register(sweep, QUEUE, interval=60, name="sweep-pending-webhooks-and-messages")
cron.register(check_meta_tokens, QUEUE, cron="17 4 * * *", name="meta-token-care")  # daily, 04:17 server time
cron.register(sweep_inbox, QUEUE, interval=60, name="sweep-inbox-replies-and-media")
cron.register(sync_all_conversations, QUEUE, interval=300, name="sync-messenger-instagram-conversations")
cron.register(sync_all_templates, QUEUE, interval=3 * 3600, name="sync-whatsapp-templates")
cron.register(roll_up_daily_stats, QUEUE, interval=3600, name="roll-up-platform-daily-stats")
