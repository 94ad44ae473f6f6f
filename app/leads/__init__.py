from flask import Blueprint

bp = Blueprint("leads", __name__)

from . import views  # noqa: E402,F401
