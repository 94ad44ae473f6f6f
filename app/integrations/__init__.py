from flask import Blueprint

bp = Blueprint("integrations", __name__)

from . import views  # noqa: E402,F401
