from ..services.connection_tests import run_test


def run_connection_test(test_id: str) -> str:
    return run_test(test_id)
