from ..services import webhooks


def drain_webhook_events() -> int:
    return webhooks.drain()
