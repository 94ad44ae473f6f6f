from flask import Blueprint

bp = Blueprint("webhooks", __name__, url_prefix="/api/webhooks")

from . import views  # noqa: E402,F401
