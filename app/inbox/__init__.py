from flask import Blueprint

# Signed-in pages: the unified inbox (list, conversation, replies), syncs of connected accounts, the daily figures.
bp = Blueprint("inbox", __name__)

from . import views  # noqa: E402,F401
