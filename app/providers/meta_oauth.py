"""Meta's side of connecting accounts, on the wire: the Login dialog URL and the token endpoint
(through Authlib's OAuth 2 client), debug_token, the Pages a user manages with their Instagram
accounts, WhatsApp numbers and business accounts, webhook subscriptions of Pages and business
accounts, and the signed_request of Meta's data deletion and deauthorize callbacks.

Plain values in, plain values out; failures are the adapters' typed errors with reasons a person
can read. Nothing here knows Flask or the database.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime

import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session

from .base import GiveUp, ProviderSettings, RetryLater
from .meta import (TOKEN_SUBCODES, graph_base, graph_delete, graph_error, graph_get, graph_message, graph_post,
                   next_cursor)
from .net import USER_AGENT

LABEL = "Meta"
APP_REFUSED = "Meta refused the App ID and App Secret (bad credentials)"
BASE_SCOPES = ("pages_show_list", "pages_read_engagement", "pages_manage_metadata", "pages_messaging",
               "instagram_basic", "instagram_manage_messages", "instagram_manage_comments",
               "whatsapp_business_management", "whatsapp_business_messaging")
LEAD_ADS_SCOPE = "leads_retrieval"
PAGE_WEBHOOK_FIELDS = ("messages", "messaging_postbacks", "message_deliveries", "message_reads", "message_echoes")
LEAD_ADS_WEBHOOK_FIELD = "leadgen"
PAGE_LIST_FIELDS = "id,name,access_token,tasks,category,instagram_business_account"
PAGE_SIZE = 100
MAX_LIST_PAGES = 20  # 2,000 Pages or numbers: beyond that a list is not read to its end
GRAPH_ID = re.compile(r"\d{1,64}")
RATE_LIMIT_CODES = {4, 17, 32, 613}  # at the token endpoint codes 1 and 2 are refusals, not hiccups
MAX_SIGNED_REQUEST = 8192
BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


# --- OAuth: the dialog and the token endpoint ----------------------------------------------------

@dataclass(frozen=True)
class Token:
    access_token: str
    expires_in: int | None  # seconds; None when Meta does not say


def authorization_url(dialog_url: str, app_id: str, redirect_uri: str, state: str, scopes: tuple[str, ...]) -> str:
    """The Login dialog address: client_id, redirect_uri, state, scope (comma-separated), response_type=code."""
    with OAuth2Session(client_id=app_id, redirect_uri=redirect_uri, scope=",".join(scopes)) as session:
        url, _ = session.create_authorization_url(dialog_url, state=state)
    return url


def exchange_code(settings: ProviderSettings, app_id: str, app_secret: str, redirect_uri: str, code: str) -> Token:
    """GET /oauth/access_token with client_id, redirect_uri, client_secret and code: the user token."""
    return _token_request(settings, app_id, app_secret, redirect_uri=redirect_uri, code=code)


def long_lived_token(settings: ProviderSettings, app_id: str, app_secret: str, token: str) -> Token:
    """GET /oauth/access_token?grant_type=fb_exchange_token: a long-lived (about 60 days) user token."""
    return _token_request(settings, app_id, app_secret, grant_type="fb_exchange_token", fb_exchange_token=token)


def _token_request(settings: ProviderSettings, app_id: str, app_secret: str, *, redirect_uri: str | None = None,
                   **params) -> Token:
    # Graph's token endpoint takes GET with the secret as a parameter: Authlib's "none" client
    # authentication puts client_id in the query, and client_secret goes with the other parameters.
    with OAuth2Session(client_id=app_id, redirect_uri=redirect_uri, token_endpoint_auth_method="none") as session:
        session.trust_env = False  # the host's proxies and .netrc must not see the app secret
        session.headers["User-Agent"] = USER_AGENT
        session.register_compliance_hook("access_token_response", _refuse_error_answers)
        try:
            token = session.fetch_token(f"{graph_base(settings)}/oauth/access_token", method="GET",
                                        client_secret=app_secret, timeout=settings.timeout, allow_redirects=False,
                                        **params)
        except requests.Timeout:
            raise RetryLater(f"Token exchange failed: Meta did not answer within {settings.timeout:g} seconds.") from None
        except requests.RequestException:
            raise RetryLater("Token exchange failed: Meta could not be reached.") from None
        except (OAuthError, ValueError) as exc:
            raise GiveUp(f"Token exchange failed: Meta's answer could not be read ({type(exc).__name__}).") from None
    access_token = token.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise GiveUp("Token exchange failed: Meta's answer held no access token.")
    return Token(access_token=access_token, expires_in=_positive_int(token.get("expires_in")))


def _refuse_error_answers(response: requests.Response) -> requests.Response:
    """Graph answers a refused exchange with its own envelope {"error": {...}}: say what Meta said."""
    if response.status_code < 300:
        return response
    error = graph_error(response)
    said = graph_message(error) or f"HTTP {response.status_code}"
    if response.status_code >= 500 or _positive_int(error.get("code")) in RATE_LIMIT_CODES:
        raise RetryLater(f"Token exchange failed: {said}", http_status=response.status_code)
    raise GiveUp(f"Token exchange failed: {said}", http_status=response.status_code)


# --- tokens and the app ------------------------------------------------------------------------

def app_token(app_id: str, app_secret: str) -> str:
    return f"{app_id}|{app_secret}"


def app_name(settings: ProviderSettings, app_id: str, app_secret: str) -> str | None:
    """GET /{app-id} with the app token: proves the App ID and App Secret belong together."""
    body = graph_get(settings, _graph_id(app_id, "App ID"), provider_label=LABEL, token_refused=APP_REFUSED,
                     headers=_bearer(app_token(app_id, app_secret)), params={"fields": "id,name"})
    if str(body.get("id") or "") != app_id:
        raise GiveUp(f"Meta answered for another app than {app_id}.")
    name = body.get("name")
    return name if isinstance(name, str) and name else None


@dataclass(frozen=True)
class TokenInfo:
    is_valid: bool
    app_id: str
    user_id: str  # the app-scoped id of the person who granted it
    profile_id: str  # a Page token's Page
    scopes: tuple[str, ...] | None  # None: Meta did not list them
    expires_at: datetime | None  # naive UTC; None: never expires or not reported
    problem: str  # why it is not valid, in words, when it is not


def debug_token(settings: ProviderSettings, app_id: str, app_secret: str, input_token: str) -> TokenInfo:
    """GET /debug_token?input_token=…&access_token={app-id}|{app-secret}."""
    body = graph_get(settings, "debug_token", provider_label=LABEL, token_refused="Meta refused the token",
                     headers=_bearer(app_token(app_id, app_secret)), params={"input_token": input_token})
    data = body.get("data") if isinstance(body.get("data"), dict) else {}
    scopes = data.get("scopes")
    error = data.get("error") if isinstance(data.get("error"), dict) else {}
    why = TOKEN_SUBCODES.get(_positive_int(error.get("subcode")))
    message = str(error.get("message") or "").strip()
    problem = "; ".join(p for p in (why, f"Meta said: {message}" if message else "") if p)
    return TokenInfo(
        is_valid=data.get("is_valid") is True,
        app_id=str(data.get("app_id") or ""),
        user_id=str(data.get("user_id") or ""),
        profile_id=str(data.get("profile_id") or ""),
        scopes=tuple(s for s in scopes if isinstance(s, str)) if isinstance(scopes, list) else None,
        expires_at=_moment(data.get("expires_at")),
        problem=problem,
    )


# --- Pages and their Instagram accounts ------------------------------------------------------------

@dataclass(frozen=True)
class Page:
    id: str
    name: str
    category: str
    access_token: str
    instagram_id: str | None


def list_pages(settings: ProviderSettings, user_token: str) -> list[Page]:
    """GET /me/accounts, every page of it: the Pages the user granted, each with its token."""
    pages: list[Page] = []
    params = {"fields": PAGE_LIST_FIELDS, "limit": PAGE_SIZE}
    for _ in range(MAX_LIST_PAGES):
        body = graph_get(settings, "me/accounts", provider_label=LABEL, headers=_bearer(user_token), params=params)
        for item in _items(body):
            page_id, token = str(item.get("id") or ""), item.get("access_token")
            if not GRAPH_ID.fullmatch(page_id) or not isinstance(token, str) or not token:
                continue  # a Page without a token is one the user cannot manage for the app
            instagram = item.get("instagram_business_account")
            instagram_id = str(instagram.get("id") or "") if isinstance(instagram, dict) else ""
            pages.append(Page(id=page_id, name=_text(item.get("name")) or f"Page {page_id}",
                              category=_text(item.get("category")), access_token=token,
                              instagram_id=instagram_id if GRAPH_ID.fullmatch(instagram_id) else None))
        after = next_cursor(body)
        if not after:
            break
        params = {**params, "after": after}
    return pages


def instagram_username(settings: ProviderSettings, page_token: str, instagram_id: str) -> str | None:
    """GET /{ig-id}?fields=username with the Page's token."""
    body = graph_get(settings, _graph_id(instagram_id, "Instagram account ID"), provider_label=LABEL,
                     headers=_bearer(page_token), params={"fields": "username"})
    username = _text(body.get("username"))
    return username or None


def subscribe_page(settings: ProviderSettings, page_id: str, page_token: str, fields: tuple[str, ...]) -> None:
    """POST /{page-id}/subscribed_apps?subscribed_fields=…: the app receives the Page's webhooks."""
    answer = graph_post(settings, f"{_graph_id(page_id, 'Page ID')}/subscribed_apps", {}, provider_label=LABEL,
                        headers=_bearer(page_token), params={"subscribed_fields": ",".join(fields)})
    if answer.get("success") is not True:
        raise GiveUp("Meta did not confirm the webhook subscription of the Page.")


def unsubscribe_page(settings: ProviderSettings, page_id: str, page_token: str) -> None:
    """DELETE /{page-id}/subscribed_apps: the app stops receiving the Page's webhooks."""
    answer = graph_delete(settings, f"{_graph_id(page_id, 'Page ID')}/subscribed_apps", provider_label=LABEL,
                          headers=_bearer(page_token))
    if answer.get("success") is not True:
        raise GiveUp("Meta did not confirm that the Page's webhook subscription was removed.")


# --- WhatsApp numbers and business accounts ------------------------------------------------------

@dataclass(frozen=True)
class PhoneNumber:
    id: str
    display_phone_number: str
    verified_name: str


def phone_number(settings: ProviderSettings, token: str, phone_number_id: str) -> PhoneNumber:
    """GET /{phone-number-id}: the number is readable with this token."""
    body = graph_get(settings, _graph_id(phone_number_id, "phone number ID"), provider_label=LABEL,
                     headers=_bearer(token), params={"fields": "id,display_phone_number,verified_name"})
    return PhoneNumber(id=phone_number_id, display_phone_number=_text(body.get("display_phone_number")),
                       verified_name=_text(body.get("verified_name")))


def business_number_ids(settings: ProviderSettings, token: str, business_account_id: str) -> set[str] | None:
    """GET /{waba-id}/phone_numbers, every page: the ids of the account's numbers; None when there are
    more than MAX_LIST_PAGES pages of them."""
    ids: set[str] = set()
    params = {"fields": "id", "limit": PAGE_SIZE}
    path = f"{_graph_id(business_account_id, 'business account ID')}/phone_numbers"
    for _ in range(MAX_LIST_PAGES):
        body = graph_get(settings, path, provider_label=LABEL, headers=_bearer(token), params=params)
        ids |= {str(item.get("id")) for item in _items(body) if item.get("id") is not None}
        after = next_cursor(body)
        if not after:
            return ids
        params = {**params, "after": after}
    return None


def subscribe_business_account(settings: ProviderSettings, token: str, business_account_id: str) -> None:
    """POST /{waba-id}/subscribed_apps: the app receives the business account's webhooks."""
    answer = graph_post(settings, f"{_graph_id(business_account_id, 'business account ID')}/subscribed_apps", {},
                        provider_label=LABEL, headers=_bearer(token))
    if answer.get("success") is not True:
        raise GiveUp("Meta did not confirm the webhook subscription of the business account.")


def unsubscribe_business_account(settings: ProviderSettings, token: str, business_account_id: str) -> None:
    answer = graph_delete(settings, f"{_graph_id(business_account_id, 'business account ID')}/subscribed_apps",
                          provider_label=LABEL, headers=_bearer(token))
    if answer.get("success") is not True:
        raise GiveUp("Meta did not confirm that the business account's webhook subscription was removed.")


# --- signed_request (data deletion and deauthorize callbacks) ------------------------------------

class SignedRequestRefused(Exception):
    """The signed_request is missing, unreadable (400) or not signed with the app secret (403)."""

    def __init__(self, reason: str, status: int = 400):
        super().__init__(reason)
        self.reason, self.status = reason, status


def parse_signed_request(signed_request: str, app_secret: str) -> dict:
    """`<base64url signature>.<base64url JSON payload>`, the signature being HMAC-SHA256 of the
    payload text as received, keyed with the App Secret. Returns the payload."""
    if not signed_request:
        raise SignedRequestRefused("No signed_request was sent.")
    if len(signed_request) > MAX_SIGNED_REQUEST:
        raise SignedRequestRefused("The signed_request is too long.", 413)
    encoded_signature, _, payload = signed_request.partition(".")
    if not BASE64URL.fullmatch(encoded_signature) or not BASE64URL.fullmatch(payload):
        raise SignedRequestRefused("The signed_request is not two base64url parts joined by a dot.")
    try:
        signature = _unbase64url(encoded_signature)
        data = json.loads(_unbase64url(payload))
    except (binascii.Error, ValueError):
        raise SignedRequestRefused("The signed_request cannot be decoded.") from None
    if not isinstance(data, dict):
        raise SignedRequestRefused("The signed_request's payload is not a JSON object.")
    if str(data.get("algorithm") or "").upper() != "HMAC-SHA256":
        raise SignedRequestRefused("The signed_request is not signed with HMAC-SHA256.")
    expected = hmac.new(app_secret.encode(), payload.encode("ascii"), hashlib.sha256).digest()
    if not hmac.compare_digest(signature, expected):
        raise SignedRequestRefused("The signed_request's signature does not match this app's secret.", 403)
    return data


def _unbase64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --- helpers -------------------------------------------------------------------------------

def _bearer(token: str) -> dict[str, str]:
    """Graph takes every token in the Authorization header, which keeps it out of URLs (and so out of
    logs of URLs); only the token endpoint's parameters and debug_token's input_token must be in the query."""
    return {"Authorization": f"Bearer {token}"}


def _graph_id(value: str, what: str) -> str:
    """Ids go into Graph paths: digits only, whatever was typed or answered."""
    if not GRAPH_ID.fullmatch(str(value)):
        raise GiveUp(f"The {what} must be a number.")
    return str(value)


def _items(body: dict) -> list[dict]:
    data = body.get("data")
    return [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []


def _text(value) -> str:
    return value.strip()[:200] if isinstance(value, str) else ""


def _positive_int(value) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _moment(unix_time) -> datetime | None:
    """debug_token's expires_at: 0 (never) and nonsense are None."""
    seconds = _positive_int(unix_time)
    if seconds is None or seconds > 4_102_444_800:  # after 2100: not a time
        return None
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)
