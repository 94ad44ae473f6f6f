from ..services import webhooks


def process_webhook_event(event_id: int) -> str:
    return webhooks.process(event_id)


def sweep() -> dict:
    return webhooks.sweep()
