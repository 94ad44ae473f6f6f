from flask import Blueprint

# Signed-in pages: the Meta app settings, Connect with Meta, WhatsApp, the connected accounts.
bp = Blueprint("platforms", __name__)
# Public: Meta's data deletion and deauthorize callbacks and the deletion status page.
callbacks_bp = Blueprint("meta_callbacks", __name__)

from . import callbacks, views  # noqa: E402,F401
