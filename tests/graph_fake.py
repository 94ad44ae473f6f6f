"""A Graph API on loopback for Lead Ads, speaking Graph's paths, its access_token query parameter,
its paging (data + paging.cursors.after + paging.next) and its error envelope
{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from urllib.parse import urlencode

from werkzeug import Request, Response

PAGE_ID, FORM_ID, OTHER_FORM_ID = "101112131415161", "444444444444", "555555555555"
PAGE_TOKEN, EXPIRED_TOKEN, BUSY_TOKEN, USER_BUSY_TOKEN = "EAAGpage", "EAAGexpired", "EAAGbusy", "EAAGuserbusy"
MAX_PAGE_SIZE = 2  # Graph may return fewer than `limit`; a small page makes every import page through


def graph_error(message: str, code: int, *, status: int = 400, subcode: int | None = None,
                kind: str = "OAuthException") -> Response:
    error = {"message": message, "type": kind, "code": code, "fbtrace_id": "AbCdEfGhIjK"}
    if subcode is not None:
        error["error_subcode"] = subcode
    return Response(json.dumps({"error": error}), status=status, content_type="application/json")


def ok(body: dict) -> Response:
    return Response(json.dumps(body), status=200, content_type="application/json")


@dataclass
class FakeLead:
    leadgen_id: str
    form_id: str
    answers: dict[str, list[str]]
    created_time: str = "2026-01-05T09:30:00+0000"

    def graph(self) -> dict:
        return {"id": self.leadgen_id, "created_time": self.created_time,
                "field_data": [{"name": k, "values": v} for k, v in self.answers.items()]}


@dataclass
class GraphFake:
    """State the tests arrange: forms of the page, leads of each form, which tokens work."""

    version: str
    base_url: str
    forms: dict[str, dict] = field(default_factory=lambda: {
        FORM_ID: {"name": "Spring offer", "status": "ACTIVE", "questions": [
            {"key": "email", "label": "Email", "type": "EMAIL", "id": "1"},
            {"key": "full_name", "label": "Full name", "type": "FULL_NAME", "id": "2"},
            {"key": "phone_number", "label": "Phone number", "type": "PHONE", "id": "3"},
            {"key": "company_name", "label": "Company name", "type": "COMPANY_NAME", "id": "4"},
            {"key": "budget", "label": "What is your budget?", "type": "CUSTOM", "id": "5"}]},
        OTHER_FORM_ID: {"name": "Newsletter", "status": "ARCHIVED", "questions": [
            {"key": "email", "label": "Email", "type": "EMAIL", "id": "6"}]},
    })
    leads: dict[str, FakeLead] = field(default_factory=dict)
    valid_tokens: set[str] = field(default_factory=lambda: {PAGE_TOKEN})
    rate_limit_after: int | None = None  # requests answered before every further one is rate limited
    served: int = 0

    def add_lead(self, leadgen_id: str, form_id: str = FORM_ID, **answers: str) -> FakeLead:
        lead = FakeLead(leadgen_id, form_id, {k: [v] for k, v in answers.items()})
        self.leads[leadgen_id] = lead
        return lead

    def handle(self, request: Request) -> Response:
        token = request.args.get("access_token", "")
        self.served += 1
        if self.rate_limit_after is not None and self.served > self.rate_limit_after:
            return graph_error("(#17) User request limit reached", 17, status=403)
        if token == EXPIRED_TOKEN:
            return graph_error("Error validating access token: Session has expired on Tuesday, 01-Apr-25 10:00:00 "
                               "PDT. The current time is Wednesday, 02-Apr-25 10:00:00 PDT.", 190, subcode=463)
        if token == BUSY_TOKEN:
            return graph_error("(#4) Application request limit reached", 4, status=403)
        if token == USER_BUSY_TOKEN:
            return graph_error("(#17) User request limit reached", 17, status=403)
        if token not in self.valid_tokens:
            return graph_error("Invalid OAuth access token - Cannot parse access token", 190)
        path = request.path.removeprefix(f"/{self.version}/")
        if path == f"{PAGE_ID}/leadgen_forms":
            items = [{"id": form_id, "name": form["name"], "status": form["status"]} for form_id, form in self.forms.items()]
            return ok(self.paged(request, path, items))
        match = re.fullmatch(r"(\d+)/leads", path)
        if match and match.group(1) in self.forms:
            items = [lead.graph() for lead in self.leads.values() if lead.form_id == match.group(1)]
            return ok(self.paged(request, path, items))
        if path in self.forms and request.args.get("fields") == "id,name,questions":
            return ok({"id": path, "name": self.forms[path]["name"], "questions": self.forms[path]["questions"]})
        if path in self.leads and "fields" not in request.args:
            return ok(self.leads[path].graph())
        return graph_error(f"Unsupported get request. Object with ID '{path}' does not exist, cannot be loaded due to "
                           "missing permissions, or does not support this operation. Please read the Graph API "
                           "documentation at https://developers.facebook.com/docs/graph-api", 100, subcode=33,
                           kind="GraphMethodException")

    def paged(self, request: Request, path: str, items: list[dict]) -> dict:
        """Graph's cursor paging: `after` is an opaque cursor; `next` only while more remain."""
        start = int(request.args["after"].removeprefix("cursor-")) if request.args.get("after") else 0
        size = min(int(request.args.get("limit", 25)), MAX_PAGE_SIZE)
        page = items[start:start + size]
        body = {"data": page}
        if page:
            body["paging"] = {"cursors": {"before": f"cursor-{start}", "after": f"cursor-{start + len(page)}"}}
            if start + len(page) < len(items):
                query = {**request.args.to_dict(), "after": f"cursor-{start + len(page)}"}
                body["paging"]["next"] = f"{self.base_url}/{self.version}/{path}?{urlencode(query)}"
        return body
