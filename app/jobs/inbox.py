"""RQ jobs of the inbox. Each runs inside the app context that worker.py sets up; the rules are in
services/inbox.py. A job that raises TryAgain is run again by RQ's Retry, with backoff."""
from rq import Retry

from ..services import inbox

SEND_RETRY = Retry(max=inbox.MAX_SEND_ATTEMPTS - 1, interval=inbox.SEND_RETRY_INTERVALS)
MEDIA_RETRY = Retry(max=inbox.MAX_MEDIA_ATTEMPTS - 1, interval=inbox.MEDIA_RETRY_INTERVALS)
PROFILE_RETRY = Retry(max=2, interval=[30, 300])
READ_RETRY = Retry(max=3, interval=[10, 60, 300])
SYNC_RETRY = Retry(max=2, interval=[60, 300])


def deliver_reply(message_id: int) -> str:
    return inbox.deliver_reply(message_id)


def fetch_media(message_id: int) -> str:
    return inbox.fetch_media(message_id)


def fetch_profile(conversation_id: int) -> str:
    return inbox.fetch_profile(conversation_id)


def mark_read(conversation_id: int) -> str:
    return inbox.mark_read_at_provider(conversation_id)


def sync_conversations(integration_id: int) -> str:
    return inbox.sync_job(integration_id)


def sync_templates(integration_id: int) -> str:
    return inbox.sync_templates_job(integration_id)


def sync_all_conversations() -> int:
    """Every 5 minutes: what Messenger and Instagram webhooks may have missed."""
    return inbox.sync_all()


def sync_all_templates() -> int:
    """Every 3 hours: the WhatsApp accounts' message templates."""
    return inbox.sync_all_templates()


def sweep() -> dict[str, int]:
    """Every minute: replies and media downloads whose job was lost, sends a dead worker left half-done."""
    return inbox.sweep()


def roll_up_daily_stats() -> int:
    """Hourly: messages in and out and conversations per day, per platform, per organisation."""
    return inbox.roll_up_daily_stats()
