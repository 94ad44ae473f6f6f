"""The public addresses that take load, served straight from WSGI ahead of Flask's request cycle:
providers' webhooks (/api/webhooks/<provider>/<public id>/ and /api/webhooks/meta/<public id>/)
and the sign-up JSON API (/api/signup/<public id>/). Everything else goes to Flask.

These callers carry no cookie, no CSRF token and no signed-in user, so Flask's sessions, CSRF,
login, limiter and first-run hooks have nothing to do for them, and URL matching against the
whole app's map is wasted; together that is most of a request's cost (bench/README.md). What a
request here still gets, as anywhere in the app: an app context, the body limit (413), JSON
answers with a clear error for anything a client can send, the app's security headers, and a
logged 500 for a bug of ours. The work itself is in services/webhooks.py, meta_webhooks.py and
signups.py.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable

from flask import Flask, current_app
from limits import parse as parse_limit
from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wrappers import Request
from werkzeug.wsgi import get_input_stream

from .extensions import limiter
from .security import NUL_MESSAGE, SECURITY_HEADERS, fields_with_nul
from .services import meta_webhooks, signups, webhooks
from .services.intake_store import Answer

# The addresses Switchboard gives out end in a slash; one posted to without it is served the same.
META_WEBHOOK = re.compile(r"/api/webhooks/meta/([^/]+)/?")
WEBHOOK = re.compile(r"/api/webhooks/([^/]+)/([^/]+)/?")
SIGNUP_API = re.compile(r"/api/signup/([^/]+)/?")
WEBHOOK_METHODS = ("GET", "HEAD", "POST")
ERRORS = {
    405: "This address does not take that kind of request.",
    413: "The request body is larger than this address accepts.",
    429: "Too many refused keys from your network just now. Wait a minute and try again.",
    503: "Nothing was stored: the database is busy or unavailable just now. Send it again in a moment.",
}
RETRY_AFTER_SECONDS = 10

Handler = Callable[[dict, int], Answer]  # (WSGI environ, body limit in bytes)


class IntakeGateway:
    """WSGI middleware: `app.wsgi_app = IntakeGateway(app, app.wsgi_app)`."""

    def __init__(self, app: Flask, flask_wsgi):
        self.app, self.flask_wsgi = app, flask_wsgi

    def __call__(self, environ: dict, start_response) -> Iterable[bytes]:
        handler, limit = self.route(environ.get("PATH_INFO", ""), environ["REQUEST_METHOD"])
        if handler is None:
            return self.flask_wsgi(environ, start_response)
        with self.app.app_context():
            try:
                answer = handler(environ, limit or current_app.config["MAX_CONTENT_LENGTH"])
            except HTTPException as exc:  # the body limit, a broken body stream
                answer = Answer(exc.code or 400, {"error": ERRORS.get(exc.code, exc.description)})
            except OperationalError:  # the database locked past the busy timeout, or not answering: nothing stored
                current_app.logger.exception("intake of %s %s: database unavailable", environ["REQUEST_METHOD"],
                                             environ["PATH_INFO"])
                answer = Answer(503, {"error": ERRORS[503]}, {"Retry-After": str(RETRY_AFTER_SECONDS)})
            except Exception:  # a bug of ours: the caller gets a 500 in words, the traceback goes to the log
                current_app.logger.exception("intake of %s %s crashed", environ["REQUEST_METHOD"], environ["PATH_INFO"])
                answer = Answer(500, {"error": "Something went wrong; the error was logged. Try again in a moment."})
        return respond(answer, environ, start_response)

    @staticmethod
    def route(path: str, method: str) -> tuple[Handler | None, int | None]:
        """(handler, body limit) for a path served here; (None, None) for Flask's."""
        if path.startswith("/api/webhooks/"):
            if method not in WEBHOOK_METHODS:
                return (not_allowed_webhook, None) if WEBHOOK.fullmatch(path) else (None, None)
            if match := META_WEBHOOK.fullmatch(path):
                return (lambda environ, limit: meta_webhook(environ, limit, match[1])), None
            if match := WEBHOOK.fullmatch(path):
                return (lambda environ, limit: webhook(environ, limit, match[1], match[2])), None
        elif path.startswith("/api/signup/") and (match := SIGNUP_API.fullmatch(path)):
            if method != "POST":
                return not_allowed_signup, None
            return (lambda environ, limit: signup(Request(environ), limit, match[1])), signups.MAX_BODY_BYTES
        return None, None


def respond(answer: Answer, environ: dict, start_response) -> list[bytes]:
    """The answer as WSGI: a handful of fixed headers, written directly (a Response object per
    request costs more than the rest of answering)."""
    if isinstance(answer.body, str):  # handshakes that echo a challenge
        body, content_type = answer.body.encode(), "text/plain; charset=utf-8"
    else:
        body, content_type = json.dumps(answer.body).encode(), "application/json"
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body))), *SECURITY_HEADERS,
               *(answer.headers or {}).items()]
    start_response(f"{answer.status} {HTTP_STATUS_CODES.get(answer.status, 'UNKNOWN').upper()}", headers)
    return [] if environ["REQUEST_METHOD"] == "HEAD" else [body]


def read_body(environ: dict, limit: int) -> bytes:
    """The whole body, or RequestEntityTooLarge (413) past `limit`, declared or streamed."""
    return get_input_stream(environ, max_content_length=limit).read()


def webhook(environ: dict, limit: int, provider: str, public_id: str) -> Answer:
    return webhooks.intake(provider, public_id, webhooks.inbound_from_environ(environ, read_body(environ, limit)))


def meta_webhook(environ: dict, limit: int, public_id: str) -> Answer:
    return meta_webhooks.intake(public_id, webhooks.inbound_from_environ(environ, read_body(environ, limit)))


def not_allowed_webhook(environ: dict, limit: int) -> Answer:
    return Answer(405, {"error": ERRORS[405]}, {"Allow": ", ".join(WEBHOOK_METHODS)})


def not_allowed_signup(environ: dict, limit: int) -> Answer:
    return Answer(405, {"error": "This address takes POST, with the page's API key in X-API-Key."}, {"Allow": "POST"})


def signup(request: Request, limit: int, public_id: str) -> Answer:
    request.max_content_length = limit

    def values() -> dict:
        submitted = signups.json_values(request.is_json, request.get_data(cache=True))
        if with_nul := fields_with_nul(submitted):  # PostgreSQL cannot store one; no field wants one
            raise signups.BodyProblem(400, {name: [NUL_MESSAGE] for name in sorted(with_nul)})
        return submitted

    environ = request.environ  # headers read directly: the few this needs, not a parsed Headers object
    client = signups.Client(ip=request.remote_addr, user_agent=environ.get("HTTP_USER_AGENT") or None,
                            origin=environ.get("HTTP_ORIGIN"))
    try:
        answer = signups.api_intake(public_id, environ.get("HTTP_X_API_KEY"), values, client)
    except signups.BodyProblem as problem:
        return Answer(problem.status, {"errors": problem.errors})
    if answer.status == 401 and too_many_refused_keys(request.remote_addr):
        return Answer(429, {"error": ERRORS[429]})
    return answer


def too_many_refused_keys(ip: str | None) -> bool:
    """Count one more refused key from this address. The endpoint's caller is the business's own
    server, which may post a whole import from one address, so accepted posts are not limited per
    IP (the browser forms are); refused keys are, with the sign-ups' limit, in the limiter's Redis."""
    try:
        return not limiter.limiter.hit(parse_limit(current_app.config["SIGNUP_RATE_LIMIT"]),
                                       "signup-api-refused-key", ip or "")
    except RedisError:  # Redis down: a 256-bit key is not guessed meanwhile; answer 401 as usual
        return False
