from ..services import signups


def drain_submissions() -> int:
    return signups.drain()
