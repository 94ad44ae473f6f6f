from ..services import campaigns


def run_campaign_step(enrollment_id: int, position: int) -> str:
    return campaigns.run_step(enrollment_id, position)
