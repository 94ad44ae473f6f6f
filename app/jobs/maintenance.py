from ..services import connection_tests


def expire_stuck_tests() -> int:
    return connection_tests.expire_stuck_tests()
