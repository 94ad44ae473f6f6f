"""Security headers on every response."""
from flask import Response, abort, jsonify, request

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "form-action 'self'",
    "base-uri 'none'",
    "object-src 'none'",
    "frame-ancestors 'none'",
])


SECURITY_HEADERS = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
    ("X-Frame-Options", "DENY"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
)


def apply_security_headers(response: Response) -> Response:
    """Add each header the response did not set itself. One pass over its headers: a lookup per
    missing header would cost an exception each, on every response. X-Frame-Options goes only with
    a policy that forbids framing (a sign-up page's iframe names the sites that may frame it)."""
    present = {name.lower(): value for name, value in response.headers.items()}
    framing_allowed = "frame-ancestors 'none'" not in present.get("content-security-policy", CONTENT_SECURITY_POLICY)
    response.headers.extend((name, value) for name, value in SECURITY_HEADERS
                            if name.lower() not in present and not (name == "X-Frame-Options" and framing_allowed))
    return response


NUL_MESSAGE = "This value contains a NUL character, which is not allowed."


def fields_with_nul(value, name: str = "body") -> set[str]:
    if isinstance(value, str):
        return {name} if "\x00" in value else set()
    if isinstance(value, dict):
        return set().union(*(fields_with_nul(v, k if name == "body" else name) | fields_with_nul(k, name)
                             for k, v in value.items()))
    if isinstance(value, list):
        return set().union(*(fields_with_nul(v, name) for v in value))
    return set()


def reject_nul_characters():
    """Refuse text with NUL characters anywhere in a request: no field wants one, and
    PostgreSQL cannot store one, so without this it would surface as a 500."""
    fields = fields_with_nul(request.args.to_dict(flat=False))
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        fields |= fields_with_nul(request.form.to_dict(flat=False))
    elif request.is_json:
        fields |= fields_with_nul(request.get_json(silent=True))
    if not fields:
        return None
    if request.path.startswith("/api/"):
        return jsonify({"errors": {name: [NUL_MESSAGE] for name in sorted(fields)}}), 400
    abort(400)
