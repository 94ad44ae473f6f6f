from ..services import campaigns, connection_tests, delivery, webhooks


def expire_stuck_tests() -> int:
    return connection_tests.expire_stuck_tests()


def sweep() -> dict[str, int]:
    """Every minute: what Redis being down or a worker dying left behind."""
    return {"webhooks": webhooks.sweep(), **delivery.sweep(), "campaign_steps": campaigns.sweep()}
