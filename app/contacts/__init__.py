from flask import Blueprint

bp = Blueprint("contacts", __name__)

from . import views  # noqa: E402,F401
