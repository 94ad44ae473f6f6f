"""GET /healthz: for a monitor or a load balancer; no sign-in, nothing secret (see services/health.py)."""
from flask import Blueprint, jsonify

from .services import health

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    status, report = health.check()
    response = jsonify(report)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response
