from ..services import campaigns, connection_tests, contact_imports, delivery, signups, webhooks


def expire_stuck_tests() -> int:
    return connection_tests.expire_stuck_tests()


def sweep() -> dict[str, int]:
    """Every minute: what Redis being down or a worker dying left behind."""
    return {"webhooks": webhooks.sweep(), **delivery.sweep(), "campaign_steps": campaigns.sweep(),
            "signup_submissions": signups.sweep(), "contact_imports": contact_imports.resume_stalled()}
