"""The application factory. Nothing runs at import time."""
from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask, jsonify, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from config import Config

from .crypto import Vault
from .extensions import csrf, db, limiter, login_manager, migrate
from .log_redaction import redact_secrets_in_request_logs
from .security import apply_security_headers, reject_nul_characters

ROOT = Path(__file__).resolve().parent.parent


class DatabaseInt(IntegerConverter):
    """<int:…> in URLs, limited to what an INTEGER column holds: a larger id is a 404, not a database error."""

    def __init__(self, url_map, **kwargs):
        kwargs.setdefault("max", 2**31 - 1)
        super().__init__(url_map, **kwargs)


def create_app(overrides: dict | None = None) -> Flask:
    app = Flask(__name__, template_folder=str(ROOT / "templates"), static_folder=str(ROOT / "static"),
                instance_path=str(ROOT / "instance"))
    app.url_map.converters["int"] = DatabaseInt
    values = {k: getattr(Config, k) for k in dir(Config) if k.isupper()}
    values.update(overrides or {})
    app.config.update(Config.finalise(values))
    app.extensions["vault"] = Vault(app.config["ENCRYPTION_KEYS"])

    db.init_app(app)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"))
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message_category = "info"
    csrf.init_app(app)
    limiter.init_app(app)

    from . import models  # noqa: F401  (models register with the metadata)
    from .api import bp as api_bp
    from .auth import bp as auth_bp
    from .campaigns import bp as campaigns_bp
    from .cli import register_cli
    from .contacts import bp as contacts_bp
    from .health import bp as health_bp
    from .inbox import bp as inbox_bp
    from .intake_gateway import IntakeGateway
    from .leads import bp as leads_bp
    from .integrations import bp as integrations_bp
    from .media import bp as media_bp
    from .platforms import bp as platforms_bp
    from .platforms import callbacks_bp as meta_callbacks_bp
    from .signup import bp as signup_bp
    from .signup import public_bp as signup_public_bp

    app.register_blueprint(auth_bp)
    app.register_blueprint(integrations_bp)
    app.register_blueprint(leads_bp)
    app.register_blueprint(contacts_bp)
    app.register_blueprint(campaigns_bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(signup_bp)
    app.register_blueprint(signup_public_bp)
    app.register_blueprint(platforms_bp)
    app.register_blueprint(meta_callbacks_bp)
    app.register_blueprint(media_bp)
    app.register_blueprint(inbox_bp)
    app.register_blueprint(health_bp)
    csrf.exempt(api_bp)  # bearer-token API: no cookies, so no CSRF
    csrf.exempt(signup_public_bp)  # public forms: a signed form token and the API key prove the caller
    csrf.exempt(meta_callbacks_bp)  # Meta proves itself with a signed_request
    register_cli(app)

    @login_manager.user_loader
    def load_user(session_id: str):
        user_id, _, version = session_id.partition(".")
        if not (user_id.isdigit() and version.isdigit()):
            return None  # not a session this app made (or one from before session versions): sign in again
        user = db.session.get(models.User, int(user_id))
        return user if user is not None and user.session_version == int(version) else None

    app.before_request(reject_nul_characters)

    @app.before_request
    def lead_to_first_run():
        if request.endpoint in ("static", "auth.setup") or request.blueprint in ("api", "signup_public", "health"):
            return None
        from .services.accounts import first_run_needed
        if not current_user.is_authenticated and first_run_needed():
            return redirect(url_for("auth.setup"))
        return None

    app.after_request(apply_security_headers)
    _register_error_pages(app)
    if not app.debug:
        logging.basicConfig(level=logging.INFO)
    redact_secrets_in_request_logs()
    app.wsgi_app = IntakeGateway(app, app.wsgi_app)  # webhooks and the sign-up API, ahead of Flask's request cycle
    if proxies := app.config["TRUSTED_PROXIES"]:  # outermost: every path sees the client's address
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies)
    return app


def _wants_json() -> bool:
    return request.blueprint == "api" or request.path.startswith("/api/")


def _register_error_pages(app: Flask) -> None:
    def page(status: int, title: str, text: str):
        if _wants_json():
            return jsonify({"error": title}), status
        return render_template("error.html", status=status, title=title, text=text), status

    @app.errorhandler(CSRFError)
    def csrf_error(exc):
        return page(400, "Form expired", "The form was missing its security token. Go back, reload the page and try again.")

    handlers = {
        400: ("Bad request", "The request could not be understood."),
        401: ("Not signed in", "Sign in to continue."),
        403: ("Not allowed", "Your role does not allow this."),
        404: ("Not found", "There is nothing here, or it belongs to another organisation."),
        405: ("Method not allowed", "This address does not take that kind of request."),
        413: ("Too large", "The request body is larger than this endpoint accepts."),
        429: ("Too many requests", "Too many attempts. Wait a minute and try again."),
        500: ("Something went wrong", "The error was logged. Try again in a moment."),
    }
    for status, (title, text) in handlers.items():
        app.register_error_handler(status, lambda exc, s=status, t=title, x=text: page(s, t, x))
