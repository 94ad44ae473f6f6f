"""What the Meta adapters (WhatsApp, Facebook) share: Graph API calls with Graph's errors
mapped by their code, since Graph answers HTTP 400 for expired tokens and unknown ids alike."""
from __future__ import annotations

import requests

from .base import GiveUp, ProviderError, ProviderSettings, RetryLater, UseAnotherProvider
from .net import call, json_body

TOKEN_REFUSED = "The access token has expired or is invalid: reconnect needed"
RATE_LIMIT_CODES = {4, 17, 32, 613, 80001, 80002, 80004, 80005, 80006, 80007, 80008, 80014, 130429}
TRANSIENT_CODES = {1, 2}
# Subcodes of 190 that say why the token stopped working.
TOKEN_SUBCODES = {
    458: "the user removed the app",
    459: "the user must log in to Facebook to clear a checkpoint",
    460: "the password was changed",
    463: "the token has expired",
    464: "the user has not confirmed their account",
    467: "the token is invalid",
    492: "the user is no longer an admin of the page",
}


def graph_base(settings: ProviderSettings) -> str:
    return f"{settings.api_base('META_GRAPH_API_BASE')}/{settings.meta_api_version}"


def graph_error(response: requests.Response) -> dict:
    """The Graph error envelope {"error": {"message", "type", "code", "error_subcode", ...}}, or {}."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return {}
    return error if isinstance(error, dict) else {}


def graph_message(error: dict) -> str:
    """Meta's own words: the message meant for people when there is one, then the technical one."""
    parts = [error.get("error_user_msg"), error.get("message")]
    return " ".join(str(p).strip() for p in parts if p and str(p).strip())


def graph_get(settings: ProviderSettings, path: str, *, provider_label: str, token_refused: str = TOKEN_REFUSED,
              **kwargs) -> dict:
    """GET {graph}/{version}/{path}; return the JSON body or raise the ProviderError Graph's code calls for.

    `token_refused` starts the reason when Graph says the token is bad (code 190).
    """
    seen: dict = {}

    def describe(response):
        seen.update(graph_error(response))
        return graph_message(seen)

    try:
        response = call("GET", f"{graph_base(settings)}/{path.lstrip('/')}", timeout=settings.timeout,
                        provider_label=provider_label, describe_error=describe, **kwargs)
    except ProviderError as exc:
        raise _by_code(exc, seen, provider_label, token_refused) from None
    return json_body(response, provider_label)


def _by_code(exc: ProviderError, error: dict, label: str, token_refused: str) -> ProviderError:
    code, subcode = _int(error.get("code")), _int(error.get("error_subcode"))
    if code is None:
        return exc
    said = graph_message(error)
    said = f" Meta said: {said}" if said else ""
    keep = {"retry_after": exc.retry_after, "http_status": exc.http_status}
    if code in (102, 190):
        why = TOKEN_SUBCODES.get(subcode)
        return UseAnotherProvider(f"{token_refused}{f' ({why})' if why else ''}.{said}", **keep)
    if code in RATE_LIMIT_CODES:
        return RetryLater(f"{label} is rate limiting requests (Graph error {code}); try again later.{said}", **keep)
    if code in TRANSIENT_CODES:
        return RetryLater(f"{label} had a temporary problem (Graph error {code}).{said}", **keep)
    if code == 10 or 200 <= code < 300:
        return UseAnotherProvider(f"The token lacks a permission this needs (Graph error {code}).{said}", **keep)
    if code == 368:
        return UseAnotherProvider(f"Meta has temporarily blocked this account for policy reasons (Graph error 368).{said}",
                                  **keep)
    if code in (100, 803):
        return GiveUp(f"Meta does not know this ID, or the token cannot see it (Graph error {code}).{said}", **keep)
    return exc


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
