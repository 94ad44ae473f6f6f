from flask import Blueprint

# Staff pages (signed in, CSRF-protected forms).
bp = Blueprint("signup", __name__)
# What the public reaches: the hosted form and its iframe, the embedded form's endpoints and the
# server-to-server JSON endpoint. No session, so no CSRF: the form token and the API key prove the caller.
public_bp = Blueprint("signup_public", __name__)

from . import public, views  # noqa: E402,F401
