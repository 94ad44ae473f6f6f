"""A loopback Meta for tests: the Login dialog (a small consent page with Allow and Cancel that
redirect to the app's callback), the token endpoint (code exchange and fb_exchange_token),
debug_token, /me/accounts with paging, Pages' Instagram accounts, WhatsApp numbers and business
accounts, and subscribed_apps of Pages and business accounts: Meta's paths and parameters, and
Graph's {"error": {...}} envelope for everything refused."""
from __future__ import annotations

import html
import itertools
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

import requests
from werkzeug import Response

VERSION = "v25.0"
APP_ID = "1234567890123"
APP_SECRET = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
PERSON = "10158000000000001"  # the app-scoped id of the person who signs in to the dialog
LONG_LIVED_SECONDS = 5183944


@dataclass
class FakePage:
    id: str
    name: str
    category: str = "Bakery"
    instagram_id: str | None = None
    instagram_username: str | None = None
    token: str = field(default_factory=lambda: "EAAPage" + secrets.token_urlsafe(24))


@dataclass
class FakeNumber:
    id: str
    business_account_id: str
    display_phone_number: str
    verified_name: str


class FakeMeta:
    def __init__(self, httpserver, *, app_id: str = APP_ID, app_secret: str = APP_SECRET):
        self.app_id, self.app_secret = app_id, app_secret
        self.lock = threading.Lock()
        self.pages = [
            FakePage("101000000000001", "Acme Bakery", instagram_id="17841400000000001", instagram_username="acmebakery"),
            FakePage("101000000000002", "Acme Catering"),
            FakePage("101000000000003", "Acme Outlet", instagram_id="17841400000000003", instagram_username="acme.outlet"),
        ]
        self.page_size = 2  # small, so that /me/accounts takes two pages
        self.person = PERSON
        self.page_expires_at = 0  # debug_token's expires_at of Page tokens: 0, never (Meta's current rule)
        self.numbers: list[FakeNumber] = []
        self.tokens: dict[str, dict] = {}  # token -> what debug_token tells about it
        self.dialogs: dict[str, dict] = {}  # consent page id -> the dialog's query
        self.codes: dict[str, dict] = {}  # authorization code -> the dialog it came from
        self.subscriptions: dict[str, str] = {}  # Page or business account id -> subscribed fields
        self.requests: list[dict] = []  # every request: method, path, args, token (from the query or the header)
        self.failures: dict[str, tuple[int, dict]] = {}  # what to refuse next, by name (see fail_next)
        self.counter = itertools.count(1)
        httpserver.expect_request(re.compile(rf"^/{re.escape(VERSION)}/.*")).respond_with_handler(self.handle)
        self.base = httpserver.url_for("/").rstrip("/")
        self.dialog_url = f"{self.base}/{VERSION}/dialog/oauth"

    # --- what tests arrange ------------------------------------------------------------------

    def fail_next(self, name: str, message: str, *, code: int = 100, subcode: int | None = None, status: int = 400):
        """Refuse the next call of one kind: code_exchange, long_lived, me_accounts, subscribe, unsubscribe,
        debug_token, phone_numbers, app."""
        error = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AbCdEf" + str(code)}
        if subcode is not None:
            error["error_subcode"] = subcode
        self.failures[name] = (status, error)

    def add_number(self, number_id: str, business_account_id: str, display: str = "+1 555-078-3881",
                   verified_name: str = "Acme Bakery") -> str:
        """A WhatsApp number and a system user token of the app that reaches it; returns the token."""
        self.numbers.append(FakeNumber(number_id, business_account_id, display, verified_name))
        token = "EAASystem" + secrets.token_urlsafe(24)
        self.tokens[token] = {"type": "SYSTEM_USER", "user_id": "12200000000000099", "expires_at": 0, "valid": True,
                              "app_id": self.app_id, "businesses": {business_account_id},
                              "scopes": ["whatsapp_business_messaging", "whatsapp_business_management"]}
        return token

    def expire(self, token: str) -> None:
        self.tokens[token]["valid"] = False

    def revoke_scope(self, token: str, scope: str) -> None:
        self.tokens[token]["scopes"] = [s for s in self.tokens[token]["scopes"] if s != scope]

    def page_token(self, page_id: str) -> str:
        return next(p.token for p in self.pages if p.id == page_id)

    def calls(self, method: str, path: str) -> list[dict]:
        return [r for r in self.requests if r["method"] == method and r["path"] == path]

    def consent(self, authorization_url: str, choice: str = "allow") -> str:
        """Play the person in the dialog: open it, press Allow or Cancel; return where Meta sends the browser."""
        page = requests.get(authorization_url, timeout=5)
        assert page.status_code == 200, page.text
        dialog = re.search(r'name="dialog" value="([^"]+)"', page.text).group(1)
        answer = requests.get(f"{self.dialog_url}/decide", params={"dialog": dialog, "choice": choice},
                              allow_redirects=False, timeout=5)
        assert answer.status_code == 302, answer.text
        return answer.headers["Location"]

    # --- the server ------------------------------------------------------------------------

    def handle(self, request):
        path = request.path[len(VERSION) + 2:]
        args = request.args.to_dict()
        token = args.get("access_token") or request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        with self.lock:
            self.requests.append({"method": request.method, "path": path, "args": args, "token": token})
            try:
                return self._route(request.method, path, args, token)
            except _Refusal as refusal:
                return _json({"error": refusal.error}, refusal.status)

    def _route(self, method, path, args, token):
        if path == "dialog/oauth" and method == "GET":
            return self._dialog(args)
        if path == "dialog/oauth/decide" and method == "GET":
            return self._decide(args)
        if path == "oauth/access_token" and method == "GET":
            return self._access_token(args)
        if path == "debug_token" and method == "GET":
            return self._debug_token(args, token)
        if path == "me/accounts" and method == "GET":
            return self._accounts(args, token)
        match = re.fullmatch(r"(\d+)(?:/(subscribed_apps|phone_numbers))?", path)
        if match is None:
            raise _Refusal(400, "Unknown path components: /" + path, 2500)
        object_id, edge = match.groups()
        if edge == "subscribed_apps" and method in ("POST", "DELETE"):
            return self._subscribed_apps(method, object_id, args, token)
        if edge == "phone_numbers" and method == "GET":
            return self._phone_numbers(object_id, args, token)
        if edge is None and method == "GET":
            return self._object(object_id, args, token)
        raise _Refusal(400, f"Unsupported {method.lower()} request.", 100, 33)

    def _failure(self, name):
        if name in self.failures:
            status, error = self.failures.pop(name)
            raise _Refusal(status, error=error)

    def _dialog(self, args):
        problems = [name for name in ("client_id", "redirect_uri", "state", "scope") if not args.get(name)]
        if args.get("client_id") and args["client_id"] != self.app_id:
            problems.append("client_id (unknown app)")
        if args.get("response_type") != "code":
            problems.append("response_type=code")
        if problems:
            return Response(f"<p>Invalid dialog request: {html.escape(', '.join(problems))}</p>", 400,
                            content_type="text/html")
        dialog = secrets.token_urlsafe(8)
        self.dialogs[dialog] = args
        scopes = "".join(f"<li>{html.escape(s)}</li>" for s in args["scope"].split(","))
        page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>Log in with Facebook</title></head>'
                f'<body><h1>Acme Connect is requesting access</h1><ul id="scopes">{scopes}</ul>'
                f'<form method="get" action="/{VERSION}/dialog/oauth/decide">'
                f'<input type="hidden" name="dialog" value="{dialog}">'
                f'<button type="submit" name="choice" value="allow">Allow</button>'
                f'<button type="submit" name="choice" value="cancel">Cancel</button></form></body></html>')
        return Response(page, 200, content_type="text/html")

    def _decide(self, args):
        dialog = self.dialogs.pop(args.get("dialog", ""), None)
        if dialog is None:
            return Response("<p>This dialog has expired.</p>", 400, content_type="text/html")
        if args.get("choice") == "allow":
            code = "AQD" + secrets.token_urlsafe(32)
            self.codes[code] = dialog
            query = {"code": code, "state": dialog["state"]}
        else:
            query = {"error": "access_denied", "error_code": "200", "error_description": "Permissions error",
                     "error_reason": "user_denied", "state": dialog["state"]}
        return Response("", 302, headers={"Location": f"{dialog['redirect_uri']}?{urlencode(query)}#_=_"})

    def _app_credentials(self, args):
        if args.get("client_id") != self.app_id or args.get("client_secret") != self.app_secret:
            raise _Refusal(400, "Error validating client secret.", 1)

    def _access_token(self, args):
        if args.get("grant_type") == "fb_exchange_token":
            self._failure("long_lived")
            self._app_credentials(args)
            given = self.tokens.get(args.get("fb_exchange_token", ""))
            if given is None or given["type"] != "USER":
                raise _Refusal(400, "Invalid OAuth access token - Cannot parse access token", 190)
            if not given["valid"]:
                raise _Refusal(400, "Error validating access token: Session has expired.", 190, 463)
            token = self._issue_user_token(given["scopes"], LONG_LIVED_SECONDS)
            return _json({"access_token": token, "token_type": "bearer", "expires_in": LONG_LIVED_SECONDS})
        self._failure("code_exchange")
        self._app_credentials(args)
        dialog = self.codes.pop(args.get("code", ""), None)
        if dialog is None:
            raise _Refusal(400, "This authorization code has been used.", 100, 36009)
        if args.get("redirect_uri") != dialog["redirect_uri"]:
            raise _Refusal(400, "Error validating verification code. Please make sure your redirect_uri is identical "
                                "to the one you used in the OAuth dialog request", 100, 36008)
        token = self._issue_user_token(dialog["scope"].split(","), 5400)
        return _json({"access_token": token, "token_type": "bearer", "expires_in": 5400})

    def _issue_user_token(self, scopes, lifetime):
        token = f"EAAUser{next(self.counter)}" + secrets.token_urlsafe(24)
        self.tokens[token] = {"type": "USER", "user_id": self.person, "scopes": list(scopes), "valid": True,
                              "app_id": self.app_id, "expires_at": int(time.time()) + lifetime}
        return token

    def _debug_token(self, args, token):
        self._failure("debug_token")
        if token != f"{self.app_id}|{self.app_secret}":
            raise _Refusal(400, "Invalid OAuth access token signature.", 190)
        info = self.tokens.get(args.get("input_token", ""))
        if info is None:
            return _json({"data": {"error": {"code": 190, "message": "Invalid OAuth access token."},
                                   "is_valid": False, "scopes": []}})
        data = {"app_id": info["app_id"], "type": info["type"], "application": "Acme Connect",
                "expires_at": info["expires_at"], "is_valid": info["valid"], "scopes": info["scopes"],
                "user_id": info["user_id"], "issued_at": int(time.time()) - 60}
        if "page_id" in info:
            data["profile_id"] = info["page_id"]
        if not info["valid"]:
            data["error"] = {"code": 190, "subcode": 463,
                             "message": "Error validating access token: Session has expired on Monday, 01-Jun-26."}
        return _json({"data": data})

    def _valid(self, token, kind=None) -> dict:
        info = self.tokens.get(token)
        if info is None or (kind and info["type"] != kind):
            raise _Refusal(400, "Invalid OAuth access token - Cannot parse access token", 190)
        if not info["valid"]:
            raise _Refusal(400, "Error validating access token: Session has expired.", 190, 463)
        return info

    def _accounts(self, args, token):
        self._failure("me_accounts")
        user = self._valid(token, "USER")
        wanted = args.get("fields", "").split(",")
        start = int(args["after"].removeprefix("cursor-")) if args.get("after") else 0
        chunk = self.pages[start:start + self.page_size]
        data = []
        for page in chunk:
            self.tokens[page.token] = {"type": "PAGE", "user_id": user["user_id"], "scopes": user["scopes"],
                                       "valid": self.tokens.get(page.token, {}).get("valid", True),
                                       "app_id": self.app_id, "expires_at": self.page_expires_at, "page_id": page.id}
            item = {"id": page.id, "name": page.name, "access_token": page.token, "category": page.category,
                    "tasks": ["ADVERTISE", "ANALYZE", "CREATE_CONTENT", "MESSAGING", "MODERATE", "MANAGE"]}
            if page.instagram_id:
                item["instagram_business_account"] = {"id": page.instagram_id}
            data.append({k: v for k, v in item.items() if k in wanted})
        body = {"data": data, "paging": {"cursors": {"before": f"cursor-{start}", "after": f"cursor-{start + len(chunk)}"}}}
        if start + len(chunk) < len(self.pages):
            body["paging"]["next"] = (f"https://graph.facebook.com/{VERSION}/me/accounts?"
                                      f"after=cursor-{start + len(chunk)}")
        return _json(body)

    def _object(self, object_id, args, token):
        if object_id == self.app_id:
            self._failure("app")
            if token != f"{self.app_id}|{self.app_secret}":
                raise _Refusal(400, "Invalid OAuth access token signature.", 190)
            return _json({"id": self.app_id, "name": "Acme Connect"})
        info = self._valid(token)
        page = next((p for p in self.pages if p.instagram_id == object_id), None)
        if page is not None and info.get("page_id") == page.id:
            return _json({"id": object_id, "username": page.instagram_username})
        number = next((n for n in self.numbers if n.id == object_id), None)
        if number is not None and number.business_account_id in info.get("businesses", ()):
            return _json({"id": number.id, "display_phone_number": number.display_phone_number,
                          "verified_name": number.verified_name, "quality_rating": "GREEN"})
        raise _Refusal(400, f"Unsupported get request. Object with ID '{object_id}' does not exist, cannot be "
                            "loaded due to missing permissions, or does not support this operation.", 100, 33)

    def _phone_numbers(self, waba_id, args, token):
        self._failure("phone_numbers")
        info = self._valid(token)
        if waba_id not in info.get("businesses", ()):
            raise _Refusal(400, "(#200) Permissions error", 200)
        numbers = [{"id": n.id, "display_phone_number": n.display_phone_number}
                   for n in self.numbers if n.business_account_id == waba_id]
        return _json({"data": numbers, "paging": {"cursors": {"before": "b", "after": "a"}}})

    def _subscribed_apps(self, method, object_id, args, token):
        self._failure("subscribe" if method == "POST" else "unsubscribe")
        info = self._valid(token)
        page = next((p for p in self.pages if p.id == object_id), None)
        if page is not None:
            if info.get("page_id") != page.id:
                raise _Refusal(400, "(#210) A page access token is required to request this resource.", 210)
            if method == "POST" and not args.get("subscribed_fields"):
                raise _Refusal(400, "(#100) The parameter subscribed_fields is required.", 100)
        elif object_id not in info.get("businesses", ()):
            raise _Refusal(400, "(#200) Permissions error", 200)
        if method == "POST":
            self.subscriptions[object_id] = args.get("subscribed_fields", "")
        else:
            self.subscriptions.pop(object_id, None)
        return _json({"success": True})


class _Refusal(Exception):
    def __init__(self, status: int, message: str = "", code: int = 100, subcode: int | None = None, error=None):
        super().__init__(message)
        self.status = status
        self.error = error or {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AxYz01"}
        if subcode is not None and error is None:
            self.error["error_subcode"] = subcode


def _json(body, status: int = 200) -> Response:
    return Response(json.dumps(body), status, content_type="application/json")
