from flask import Blueprint

# Signed-in pages: the Meta app settings, Connect with Meta, WhatsApp, the connected accounts.
bp = Blueprint("platforms", __name__)

from . import views  # noqa: E402,F401
