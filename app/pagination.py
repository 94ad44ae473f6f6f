"""Page numbers from the query string, kept in a range every database can take."""
from flask import request

MAX_PAGE = 100_000


def requested_page() -> int:
    return max(1, min(request.args.get("page", 1, type=int), MAX_PAGE))


def requested_per_page(default: int, maximum: int) -> int:
    return max(1, min(request.args.get("per_page", default, type=int), maximum))
