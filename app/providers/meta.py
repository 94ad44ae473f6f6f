"""What the Meta adapters (WhatsApp, Facebook) share: Graph API calls with Graph's errors
mapped by their code, since Graph answers HTTP 400 for expired tokens and unknown ids alike.
One mapping serves reads (graph_get) and sends (graph_post), and WhatsApp's own codes, which
arrive both in a send's error and in a failed status webhook (whatsapp_error_words).
Meta's webhooks are verified the same way for every product: the hub.challenge handshake
(answer_verification) and X-Hub-Signature-256 over the raw body (verify_signature)."""
from __future__ import annotations

import hashlib
import hmac
import re

import requests

from .base import GiveUp, InboundWebhook, ProviderError, ProviderSettings, RetryLater, UseAnotherProvider, WebhookRejected
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
# WhatsApp Cloud API codes: what can help (the error type) and what they mean in plain words.
WHATSAPP_CODES: dict[int, tuple[type[ProviderError], str]] = {
    131026: (GiveUp, "WhatsApp cannot deliver to this number: it may not be on WhatsApp, may not have accepted "
                     "WhatsApp's current terms, or may use an old version of the app"),
    131047: (GiveUp, "More than 24 hours have passed since this customer last wrote to the number, so WhatsApp "
                     "only allows an approved template message: send a template instead"),
    131049: (GiveUp, "Meta did not deliver this marketing message, to keep the customer's engagement healthy "
                     "(per-user marketing limit)"),
    130472: (GiveUp, "The customer's number is part of a Meta experiment that receives no marketing messages"),
    131021: (GiveUp, "The recipient is the sending number itself"),
    131030: (GiveUp, "The recipient is not on the allowed list of this test number: add it in the Meta App "
                     "Dashboard, or use a registered business number"),
    131051: (GiveUp, "WhatsApp does not support this message type"),
    131052: (GiveUp, "WhatsApp could not download the media from its link: check that the link is public and "
                     "the file type and size are supported"),
    131053: (GiveUp, "WhatsApp could not upload the media: check the file type and size"),
    131008: (GiveUp, "A required parameter is missing from the message"),
    131009: (GiveUp, "A parameter of the message is not valid"),
    135000: (GiveUp, "WhatsApp refused the message because of a problem with its parameters (generic user error)"),
    132000: (GiveUp, "The number of parameters does not match the template's placeholders"),
    132001: (GiveUp, "The template does not exist in this language, or is not approved yet"),
    132005: (GiveUp, "The template's text is too long once the parameters are filled in"),
    132007: (GiveUp, "The template's content violates a WhatsApp policy"),
    132008: (GiveUp, "A template parameter is formatted incorrectly"),
    132012: (GiveUp, "A template parameter does not have the format the template expects"),
    132015: (GiveUp, "The template is paused because of its low quality"),
    132016: (GiveUp, "The template was paused too often for low quality and is now disabled"),
    130429: (RetryLater, "The number reached WhatsApp's message throughput limit (about 80 messages a second): "
                         "try again shortly"),
    131056: (RetryLater, "Too many messages went to this same recipient in a short time (pair rate limit): "
                         "try again later"),
    131000: (RetryLater, "WhatsApp failed to send the message for an unknown reason"),
    131016: (RetryLater, "A WhatsApp service is temporarily unavailable"),
    131057: (RetryLater, "The business account is in maintenance mode"),
    131048: (UseAnotherProvider, "WhatsApp restricts how many messages this number may send, because earlier "
                                 "messages were blocked or reported as spam (spam rate limit)"),
    131031: (UseAnotherProvider, "The WhatsApp Business Account is locked: it was restricted for a policy "
                                 "violation, or the data in the request did not match the account's"),
    131042: (UseAnotherProvider, "WhatsApp refused to send because of a problem with the business account's "
                                 "payment method"),
    131045: (UseAnotherProvider, "The sending number has a registration problem (certificate): register it again"),
    131005: (UseAnotherProvider, "Access denied: the token lacks a permission this needs, such as "
                                 "whatsapp_business_messaging"),
    131037: (UseAnotherProvider, "The number's display name is not approved yet"),
    133010: (UseAnotherProvider, "The sending number is not registered with the Cloud API"),
}
TEMPLATE_CODES = range(132000, 132100)  # the template family; codes not listed above are template problems too
CHALLENGE = re.compile(r"[A-Za-z0-9_.\-]{1,256}")


def answer_verification(request: InboundWebhook, verify_token: str | None) -> str | None:
    """The hub.challenge to echo when Meta checks the callback URL (hub.mode=subscribe with our
    verify token); None for a GET that is no verification request."""
    query = dict(request.query)
    if not any(name.startswith("hub.") for name in query):
        return None
    if query.get("hub.mode") != "subscribe":
        raise WebhookRejected("Only hub.mode=subscribe verification requests are answered.", 403)
    expected = verify_token or ""
    given = query.get("hub.verify_token") or ""
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise WebhookRejected("The verify token does not match this address's webhook verify token.", 403)
    challenge = query.get("hub.challenge") or ""
    if not CHALLENGE.fullmatch(challenge):
        raise WebhookRejected("The hub.challenge is missing or not a plain token.", 400)
    return challenge


NO_APP_SECRET = ("No app secret is configured for this integration: set the App secret (Meta App Dashboard → "
                 "App settings → Basic) so Meta's webhooks can be verified.")


def verify_signature(request: InboundWebhook, app_secret: str | None, *, missing: str = NO_APP_SECRET) -> None:
    """X-Hub-Signature-256: HMAC-SHA256 of the raw body with the app secret, compared in constant time.
    `missing` says what to do when no secret is configured where this request arrived."""
    if not app_secret:
        raise WebhookRejected(missing)
    given = request.header("X-Hub-Signature-256")
    if not given:
        raise WebhookRejected("The request is not signed (X-Hub-Signature-256 header missing).")
    expected = "sha256=" + hmac.new(app_secret.encode(), request.body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(given.strip().lower().encode(), expected.encode()):
        raise WebhookRejected("The X-Hub-Signature-256 signature does not match the body and the app secret.")


def next_cursor(body: dict) -> str | None:
    """Graph's paging: the `after` cursor when there is a next page (paging.next), else None."""
    paging = body.get("paging") if isinstance(body.get("paging"), dict) else {}
    cursors = paging.get("cursors") if isinstance(paging.get("cursors"), dict) else {}
    after = cursors.get("after")
    return after if isinstance(after, str) and after and paging.get("next") else None


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
    """Meta's own words: the message meant for people when there is one, then the technical one,
    then WhatsApp's details (error_data.details) when they add something."""
    parts = [str(p).strip() for p in (error.get("error_user_msg"), error.get("message")) if p and str(p).strip()]
    data = error.get("error_data")
    details = str(data.get("details") or "").strip() if isinstance(data, dict) else ""
    if details and not any(details in p for p in parts):
        parts.append(details)
    return " ".join(parts)


def whatsapp_error_words(code: int | None) -> tuple[type[ProviderError], str] | None:
    """(what can help, plain words) for a WhatsApp Cloud API error code, or None when it is not one."""
    if code in WHATSAPP_CODES:
        return WHATSAPP_CODES[code]
    if code in TEMPLATE_CODES:
        return GiveUp, "WhatsApp refused the template message"
    return None


def graph_get(settings: ProviderSettings, path: str, *, provider_label: str, token_refused: str = TOKEN_REFUSED,
              **kwargs) -> dict:
    """GET {graph}/{version}/{path}; return the JSON body or raise the ProviderError Graph's code calls for.

    `token_refused` starts the reason when Graph says the token is bad (code 190).
    """
    response = _graph("GET", settings, path, provider_label, token_refused, **kwargs)
    return json_body(response, provider_label)


def graph_post(settings: ProviderSettings, path: str, payload: dict, *, provider_label: str,
               token_refused: str = TOKEN_REFUSED, **kwargs) -> dict:
    """POST JSON to {graph}/{version}/{path}; return the JSON body or raise the ProviderError Graph's code calls for.

    A 2xx answer whose body cannot be read gives {}: Meta accepted the call, and raising a retryable
    error would send the same message twice.
    """
    response = _graph("POST", settings, path, provider_label, token_refused, json=payload, **kwargs)
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def graph_delete(settings: ProviderSettings, path: str, *, provider_label: str, token_refused: str = TOKEN_REFUSED,
                 **kwargs) -> dict:
    """DELETE {graph}/{version}/{path} (unsubscribing an app); the JSON body, or {} when it cannot be read."""
    response = _graph("DELETE", settings, path, provider_label, token_refused, **kwargs)
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _graph(method: str, settings: ProviderSettings, path: str, label: str, token_refused: str, **kwargs):
    seen: dict = {}

    def describe(response):
        seen.update(graph_error(response))
        return graph_message(seen)

    try:
        return call(method, f"{graph_base(settings)}/{path.lstrip('/')}", timeout=settings.timeout,
                    provider_label=label, describe_error=describe, **kwargs)
    except ProviderError as exc:
        raise _by_code(exc, seen, label, token_refused, writing=method != "GET") from None


def _by_code(exc: ProviderError, error: dict, label: str, token_refused: str, *, writing: bool = False) -> ProviderError:
    code, subcode = _int(error.get("code")), _int(error.get("error_subcode"))
    if code is None:
        return exc
    said = graph_message(error)
    said = f" Meta said: {said}" if said else ""
    keep = {"retry_after": exc.retry_after, "http_status": exc.http_status}
    whatsapp = whatsapp_error_words(code)
    if whatsapp is not None:
        kind, words = whatsapp
        return kind(f"{words} (WhatsApp error {code}).{said}", **keep)
    if writing and code == 100 and subcode != 33:  # on a write, 100 is a parameter Graph refused, not an unknown ID
        return GiveUp(f"Meta refused a parameter of the request (Graph error 100, invalid parameter).{said}", **keep)
    if writing and code in (100, 803):  # the configured ID is wrong: another integration may still send
        return UseAnotherProvider(f"Meta does not know this ID, or the token cannot see it (Graph error {code}): "
                                  f"check the integration's IDs.{said}", **keep)
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
