"""Daily token care of connected Meta accounts (rq cron, app/cron_config.py)."""
from ..services import meta_tokens


def check_meta_tokens() -> dict[str, int]:
    return meta_tokens.check_all()
