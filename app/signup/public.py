"""The public side of sign-up pages: the hosted form, its iframe and the embedded form's two
endpoints (the JSON endpoint is served ahead of Flask, by app/intake_gateway.py). Every answer is
a clear 4xx for anything a client can send; the work is in services/signups.py."""
from __future__ import annotations

from functools import wraps
from urllib.parse import urlsplit

from flask import current_app, g, jsonify, redirect, render_template, request, url_for

from ..extensions import limiter
from ..security import CONTENT_SECURITY_POLICY
from ..services import signups
from . import public_bp

EMBED_ENDPOINTS = ("signup_public.embed_form", "signup_public.embed_submit")
PUBLIC_ERRORS = {
    400: "The form could not be read. Go back, reload the page and try again.",
    403: "This form is not taking sign-ups at the moment.",
    404: "There is no sign-up form at this address.",
    405: "This address does not take that kind of request.",
    413: "The form is larger than this address accepts.",
    415: "This address takes JSON (Content-Type: application/json).",
    429: "Too many sign-ups from your network just now. Wait a minute and try again.",
    503: "This sign-up page is being changed just now. Try again in a moment.",
}

# One bucket per client IP across the browser forms' posts, in Redis so it holds across processes.
# Behind a reverse proxy the client IP is the proxy's unless the app is told to trust it (README).
rate_limit = limiter.shared_limit(lambda: current_app.config["SIGNUP_RATE_LIMIT"], scope="signup", methods=["POST"])


@public_bp.url_value_preprocessor
def limit_body(endpoint, values):
    """Runs before any before_request hook reads the body: a larger body is a 413 at once."""
    request.max_content_length = signups.MAX_BODY_BYTES


def _page_or_none() -> signups.Page | None:
    """For a post, the page as this process last read it (signups.find_page): good for accepting, since
    a submission is stored only if the page is still at that version, and a refusal reads it again
    (_refuse). Showing the form reads it as it is now, so that an edit shows at once."""
    if "signup_page" not in g:
        g.signup_page_fresh = request.method != "POST"
        g.signup_page = signups.find_page((request.view_args or {}).get("public_id", ""), fresh=g.signup_page_fresh)
    return g.signup_page


def _page(*, active: bool = True) -> signups.Page:
    page = _page_or_none()
    if page is None:
        _refuse(404, signups.NO_PAGE)
    if active and not page.is_active:
        _refuse(403, signups.DEACTIVATED)
    return page


class _Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class _PageChanged(Exception):
    """The copy of the page this request used may be out of date: read it again and start over."""


def _refuse(status: int, message: str):
    """Refuse, on a fresh read of the page only: the change that makes this request good (a page
    activated, a key replaced, an origin added) may be newer than the copy."""
    if not g.get("signup_page_fresh"):
        raise _PageChanged()
    raise _Refused(status, message)


def _on_current_page(view):
    """Run the view on the copy of the page; if it finds the copy may be stale, again on a fresh read."""
    @wraps(view)
    def run(**kwargs):
        for _ in range(signups.INTAKE_ATTEMPTS):
            try:
                return view(**kwargs)
            except _PageChanged:
                g.signup_page, g.signup_page_fresh = signups.find_page(kwargs["public_id"], fresh=True), True
        raise _Refused(503, PUBLIC_ERRORS[503])
    return run


def _receive(page: signups.Page, source: str, values: dict, **spam) -> signups.Received:
    received = signups.receive(page, source, values, _client(), **spam)
    if received.status == "stale":  # the page changed since it was read: every check is made again
        raise _PageChanged()
    return received


def _wants_json() -> bool:
    return request.endpoint in EMBED_ENDPOINTS


@public_bp.errorhandler(_Refused)
def refused(exc: _Refused):
    if _wants_json():
        return jsonify({"error": exc.message}), exc.status
    return render_template("signup/unavailable.html", text=exc.message, frame=_in_frame()), exc.status


def _http_error(exc):
    text = PUBLIC_ERRORS.get(exc.code, exc.description)
    if _wants_json():
        return jsonify({"error": text}), exc.code
    return render_template("signup/unavailable.html", text=text, frame=_in_frame()), exc.code


for _status in PUBLIC_ERRORS:
    public_bp.register_error_handler(_status, _http_error)


@public_bp.after_request
def cross_origin(response):
    """CORS for the embedded form: echo the Origin only when it is one of the page's allowed origins."""
    if request.endpoint in EMBED_ENDPOINTS:
        origin = request.headers.get("Origin")
        page = _page_or_none()
        if page is not None and page.allows_origin(origin):
            response.headers["Access-Control-Allow-Origin"] = origin
        response.vary.add("Origin")
    return response


def _client() -> signups.Client:
    return signups.Client(ip=request.remote_addr, user_agent=request.user_agent.string or None,
                          origin=request.headers.get("Origin"))


def _json_object() -> dict:
    return signups.json_values(request.is_json, request.get_data(cache=True))


@public_bp.errorhandler(signups.BodyProblem)
def body_problem(exc: signups.BodyProblem):
    return jsonify({"errors": exc.errors}), exc.status


# -- the hosted form and its iframe ---------------------------------------------------------------

def _in_frame() -> bool:
    return request.endpoint in ("signup_public.frame", "signup_public.frame_submit") or (
        request.endpoint == "signup_public.thanks" and request.args.get("frame") == "1")


def _with_policy(response, page: signups.Page, *, frame: bool):
    """Our own scripts and styles only, as everywhere; the form may lead on to the page's redirect URL,
    and the iframe may sit in the page's allowed origins (and our own pages)."""
    form_action = "'self'"
    if page.redirect_url and not frame:  # a redirect after a form post is held to form-action
        target = urlsplit(page.redirect_url)
        form_action += f" {target.scheme}://{target.hostname}" + (f":{target.port}" if target.port else "")
    ancestors = " ".join(["'self'", *page.allowed_origins]) if frame else "'none'"
    response.headers["Content-Security-Policy"] = (
        CONTENT_SECURITY_POLICY.replace("form-action 'self'", f"form-action {form_action}")
        .replace("frame-ancestors 'none'", f"frame-ancestors {ancestors}"))
    return response


def _form_page(page: signups.Page, *, frame: bool, values=None, errors=None, token=None, status=200):
    html = render_template("signup/form.html", page=page, frame=frame, values=values or {}, errors=errors or {},
                           token=token or signups.form_token(page), honeypot=signups.HONEYPOT_FIELD,
                           token_field=signups.TOKEN_FIELD,
                           action=url_for("signup_public.frame_submit" if frame else "signup_public.submit",
                                          public_id=page.public_id))
    return _with_policy(current_app.make_response((html, status)), page, frame=frame)


@public_bp.get("/f/<public_id>")
@_on_current_page
def form(public_id):
    page = _page()
    signups.count_view(page)
    return _form_page(page, frame=False)


@public_bp.get("/f/<public_id>/frame")
@_on_current_page
def frame(public_id):
    page = _page()
    signups.count_view(page)
    return _form_page(page, frame=True)


@public_bp.post("/f/<public_id>")
@rate_limit
@_on_current_page
def submit(public_id):
    return _browser_submit(_page(), frame=False)


@public_bp.post("/f/<public_id>/frame")
@rate_limit
@_on_current_page
def frame_submit(public_id):
    return _browser_submit(_page(), frame=True)


def _browser_submit(page: signups.Page, *, frame: bool):
    values, token, honeypot = signups.browser_values(request.form.to_dict())
    spam, seconds = signups.spam_reason(page, token, honeypot)
    received = _receive(page, "embed" if frame else "hosted", values, spam=spam, seconds=seconds)
    if received.errors:  # a bot gets none: spam is answered like a success
        return _form_page(page, frame=frame, values=values, errors=received.errors, token=token, status=400)
    if page.redirect_url and not frame:
        return redirect(page.redirect_url, code=303)
    return redirect(url_for("signup_public.thanks", public_id=page.public_id, frame="1" if frame else None), code=303)


@public_bp.get("/f/<public_id>/thanks")
@_on_current_page
def thanks(public_id):
    page = _page(active=False)
    frame = _in_frame()
    html = render_template("signup/thanks.html", page=page, frame=frame, message=signups.THANK_YOU)
    return _with_policy(current_app.make_response(html), page, frame=frame)


# -- the embedded form: a script on the business's site fetches the form, then posts it -----------

@public_bp.get("/f/<public_id>/embed.json")
@_on_current_page
def embed_form(public_id):
    page = _page()
    if not page.allows_origin(request.headers.get("Origin")):
        _refuse(403, "This site is not among the sign-up page's allowed origins.")
    signups.count_view(page)
    fields = [{k: item[k] for k in ("name", "type", "label", "required", "options") if k in item}
              for item in page.form_fields]
    return jsonify({"name": page.name, "fields": fields, "token": signups.form_token(page),
                    "token_field": signups.TOKEN_FIELD, "honeypot_field": signups.HONEYPOT_FIELD,
                    "submit_url": url_for("signup_public.embed_submit", public_id=page.public_id, _external=True),
                    "thank_you": signups.THANK_YOU, "redirect_url": page.redirect_url})


@public_bp.route("/f/<public_id>/embed", methods=["POST", "OPTIONS"])
@rate_limit
@_on_current_page
def embed_submit(public_id):
    page = _page()
    if not page.allows_origin(request.headers.get("Origin")):
        if g.get("signup_page_fresh"):
            current_app.logger.warning("embedded sign-up refused for page %s: origin %r is not allowed", page.id,
                                       (request.headers.get("Origin") or "")[:100])
        _refuse(403, "This site is not among the sign-up page's allowed origins.")
    if request.method == "OPTIONS":  # the CORS preflight of a JSON post
        return "", 204, {"Access-Control-Allow-Methods": "POST", "Access-Control-Allow-Headers": "Content-Type",
                         "Access-Control-Max-Age": "600"}
    values, token, honeypot = signups.browser_values(_json_object())
    spam, seconds = signups.spam_reason(page, token, honeypot)
    received = _receive(page, "embed", values, spam=spam, seconds=seconds)
    if received.errors:
        return jsonify({"errors": received.errors}), 400
    return jsonify({"submission_id": received.submission_id, "message": signups.THANK_YOU,
                    "redirect_url": page.redirect_url}), 201


# -- server to server ---------------------------------------------------------------------------
