import hashlib
import json
import re
from datetime import datetime, timezone

from ..base import FetchedLead, Field, GiveUp, LeadEvent, Provider, RetryLater, UseAnotherProvider, WebhookRejected
from ..meta import TOKEN_SUBCODES, answer_verification, graph_get, next_cursor, verify_signature

DIGITS = r"^\d{1,25}$"
GRAPH_ID = re.compile(r"\d{1,64}")  # ids go into Graph paths: digits only, whatever a body claims
APP_REFUSED = "Meta refused the app ID and app secret (bad credentials)"
PAGE_TOKEN_REFUSED = "Meta refused the page access token: it has expired or is invalid, reconnect needed"
# The permissions each feature cannot work without.
FEATURE_SCOPES = (("enable_lead_ads", "Lead Ads", "leads_retrieval"), ("enable_messenger", "Messenger", "pages_messaging"))
# Where a lead form's answers go on the contact. Facebook's standard questions have fixed keys;
# any other question goes to a custom field under its own key unless the mapping says otherwise.
STANDARD_QUESTIONS = {"email": "email", "phone_number": "phone", "full_name": "name", "first_name": "first_name",
                      "last_name": "last_name"}
MAPPING_TARGETS = ("email", "phone", "name", "first_name", "last_name", "skip")  # or "fields.<custom field>"
MAX_MAPPING_ENTRIES = 100
MAX_KEY = 100
MAX_TAG = 100
PAGE_SIZE = 100
MAX_FORM_PAGES = 10  # 1,000 forms
LATEST_MOMENT = 4_102_444_800  # 2100-01-01: a later "time" is not one


class FacebookGraphAPI(Provider):
    integration_type = "facebook"
    name = "graph_api"
    label = "Facebook (Meta Graph API)"
    receives_webhooks = True
    fields = (
        Field("app_id", "App ID", pattern=DIGITS, pattern_message="Invalid App ID format: it must be numeric.",
              help="Leave empty to use the organisation's Meta app (Settings)."),
        Field("app_secret", "App secret", "secret", help="Leave empty to use the organisation's Meta app (Settings)."),
        Field("access_token", "User or system user access token", "secret"),
        Field("page_id", "Page ID", pattern=DIGITS, pattern_message="The Page ID is a number."),
        Field("page_access_token", "Page access token", "secret"),
        Field("enable_lead_ads", "Receive Lead Ads leads", "bool", default=False),
        Field("lead_form_id", "Lead form ID", pattern=DIGITS, pattern_message="The lead form ID is a number.",
              help="Leave empty to take leads from every form of the page."),
        Field("enable_messenger", "Receive Messenger conversations", "bool", default=False),
        Field("verify_token", "Webhook verify token", "generated",
              help="Paste this into the Meta App Dashboard with the webhook URL."),
        Field("auto_create_contacts", "Create contacts from leads", "bool", default=True),
        Field("trigger_campaign_on_lead", "Campaign to start on a new lead", suggest="campaigns",
              help="The name of one of your campaigns; each new lead's contact is enrolled in it."),
        Field("apply_tag", "Tag for new leads", placeholder="facebook-lead", suggest="tags",
              help="Applied to the contact of every lead. Leave empty for none."),
        Field("lead_field_mapping", "Lead form field mapping", "json",
              help='Where the answers to your own questions go: {"question_key": "fields.company"}, or one of '
                   '"email", "phone", "name", "first_name", "last_name", "skip". Questions not listed go to a '
                   'custom field named after their key.'),
    )
    webhook_headers = ("x-hub-signature-256",)

    def validate(self, config, secrets):
        errors = {}
        problem = mapping_problem(config.get("lead_field_mapping"))
        if problem:
            errors["lead_field_mapping"] = [problem]
        if len(config.get("apply_tag") or "") > MAX_TAG:
            errors["apply_tag"] = [f"A tag name is at most {MAX_TAG} characters."]
        return errors

    def check(self, config, secrets):
        # debug_token inspects the stored token with the app's own credentials; nothing is posted.
        app_id = config.get("app_id")
        if not app_id or not secrets.get("app_secret"):
            raise GiveUp("Meta App credentials not configured: save the App ID and App Secret in Settings.")
        app_token = f"{app_id}|{secrets['app_secret']}"
        kind, token = ("page access token", secrets.get("page_access_token")) if secrets.get("page_access_token") \
            else ("access token", secrets.get("access_token"))
        if not token:
            app = graph_get(self.settings, app_id, provider_label=self.label, token_refused=APP_REFUSED,
                            params={"fields": "id,name", "access_token": app_token})
            return (f"App ID and app secret accepted for app {app_id}{_named(app.get('name'))}; "
                    "no page or user access token is connected yet.")
        body = graph_get(self.settings, "debug_token", provider_label=self.label, token_refused=APP_REFUSED,
                         params={"input_token": token, "access_token": app_token})
        data = body.get("data") if isinstance(body.get("data"), dict) else {}
        if not data.get("is_valid"):
            error = data.get("error") if isinstance(data.get("error"), dict) else {}
            why = TOKEN_SUBCODES.get(error.get("subcode"))
            said = f" Meta said: {error['message']}" if error.get("message") else ""
            raise UseAnotherProvider(f"The {kind} is no longer valid{f' ({why})' if why else ''}: reconnect needed.{said}")
        token_app = str(data.get("app_id") or "")
        if token_app != app_id:
            raise UseAnotherProvider(f"The {kind} was issued for another Meta app ({token_app or 'unknown'}), "
                                     f"not app {app_id}: reconnect with this app.")
        page_id, profile_id = config.get("page_id"), str(data.get("profile_id") or "")
        if kind == "page access token" and page_id and profile_id and profile_id != page_id:
            raise UseAnotherProvider(f"The page access token belongs to page {profile_id}, not page {page_id}: "
                                     "reconnect and choose the right page.")
        scopes = [s for s in data.get("scopes") or [] if isinstance(s, str)]
        missing = [f"{scope} (for {feature})" for key, feature, scope in FEATURE_SCOPES
                   if config.get(key) and scope not in scopes]
        if missing:
            what, it = ("permissions", "them") if len(missing) > 1 else ("permission", "it")
            raise UseAnotherProvider(f"The {kind} lacks the {what} {', '.join(missing)}: reconnect and grant {it}.")
        return (f"The {kind} is valid for app {app_id}{_named(data.get('application'))}, {_expiry(data.get('expires_at'))}"
                f"; permissions: {', '.join(scopes) or 'none'}.")

    # --- webhooks ----------------------------------------------------------------------------

    def answer_webhook_get(self, config, secrets, request):
        """Meta's verification request when the callback URL is saved in the App Dashboard."""
        return answer_verification(request, config.get("verify_token"))

    def verify_webhook(self, config, secrets, request):
        verify_signature(request, secrets.get("app_secret"))
        read_notification(request.body)  # signed but unreadable: refused with 400 before it is stored

    def webhook_dedup_key(self, request):
        """A notification that only announces leads is identified by their leadgen ids, so Meta's
        retry of it, however serialised, is stored once. Anything else by its exact body."""
        try:
            leads, other = read_notification(request.body)
        except WebhookRejected:
            leads, other = [], True
        if other or not leads:
            return super().webhook_dedup_key(request)
        ids = sorted({lead.leadgen_id for lead in leads})
        return "leadgen:" + (ids[0] if len(ids) == 1 else hashlib.sha256(",".join(ids).encode()).hexdigest())

    def parse_webhook(self, config, request):
        """Lead events for the leadgen changes. Messenger messages and other Page fields are for
        later features: they parse into nothing."""
        return read_notification(request.body)[0]

    # --- Lead Ads ----------------------------------------------------------------------------

    def fetch_lead(self, config, secrets, leadgen_id: str) -> FetchedLead:
        """GET /{leadgen_id}: the answers of one lead."""
        body = self._get(secrets, _graph_id(leadgen_id, "lead"), {})
        return fetched_lead(body, leadgen_id)

    def lead_forms(self, config, secrets) -> list[dict]:
        """The page's lead forms, {"id", "name", "status"}, as Graph lists them."""
        page_id = config.get("page_id")
        if not page_id:
            raise GiveUp("Set the Page ID of the integration first: the lead forms are the page's.")
        forms, params = [], {"fields": "id,name,status", "limit": PAGE_SIZE}
        for _ in range(MAX_FORM_PAGES):
            body = self._get(secrets, f"{_graph_id(page_id, 'page')}/leadgen_forms", params)
            for item in _data(body):
                if GRAPH_ID.fullmatch(str(item.get("id") or "")):
                    forms.append({"id": str(item["id"]), "name": _text(item.get("name")) or f"Form {item['id']}",
                                  "status": _text(item.get("status"))})
            after = next_cursor(body)
            if not after:
                break
            params = {**params, "after": after}
        return forms

    def form_questions(self, config, secrets, form_id: str) -> list[dict]:
        """The questions of one form, {"key", "label", "type"}, in the form's order."""
        body = self._get(secrets, _graph_id(form_id, "form"), {"fields": "id,name,questions"})
        questions = []
        for item in body.get("questions") if isinstance(body.get("questions"), list) else []:
            key = _text(item.get("key")) if isinstance(item, dict) else ""
            if key and len(key) <= MAX_KEY:
                questions.append({"key": key, "label": _text(item.get("label")) or key, "type": _text(item.get("type"))})
        return questions

    def form_leads(self, config, secrets, form_id: str, after: str | None = None
                   ) -> tuple[list[FetchedLead], str | None]:
        """One page of GET /{form_id}/leads, and the cursor of the next page (None on the last)."""
        params = {"fields": "id,created_time,field_data", "limit": PAGE_SIZE}
        if after:
            params["after"] = after
        body = self._get(secrets, f"{_graph_id(form_id, 'form')}/leads", params)
        leads = [fetched_lead(item, str(item.get("id")), form_id) for item in _data(body)
                 if GRAPH_ID.fullmatch(str(item.get("id") or ""))]
        return leads, next_cursor(body)

    def _get(self, secrets, path: str, params: dict) -> dict:
        token = secrets.get("page_access_token") or secrets.get("access_token")
        if not token:
            raise UseAnotherProvider("No page access token is set: reconnect needed (enter the Page access token "
                                     "and save).")
        return graph_get(self.settings, path, provider_label=self.label, token_refused=PAGE_TOKEN_REFUSED,
                         params={**params, "access_token": token})


def mapping_problem(mapping) -> str | None:
    """What is wrong with a lead field mapping, in plain words; None when it can be used."""
    if mapping in (None, ""):
        return None
    if not isinstance(mapping, dict):
        return 'Give an object of question keys and where they go, e.g. {"company_name": "fields.company"}.'
    if len(mapping) > MAX_MAPPING_ENTRIES:
        return f"At most {MAX_MAPPING_ENTRIES} questions."
    for key, target in mapping.items():
        if not key.strip() or len(key) > MAX_KEY:
            return f"Each question key is 1 to {MAX_KEY} characters."
        if isinstance(target, str) and target.startswith("fields.") and len(target) > len("fields.") + MAX_KEY:
            return f"“{key[:40]}”: a custom field name is at most {MAX_KEY} characters."
        if not isinstance(target, str) or not (target in MAPPING_TARGETS or _custom_field(target)):
            return (f"“{key[:40]}” goes nowhere known: use {', '.join(f'“{t}”' for t in MAPPING_TARGETS)} "
                    "or “fields.<custom field name>”.")
    return None


def answer_targets(field_data, mapping: dict | None) -> list[tuple[str, str, str]]:
    """(question key, answer, where it goes) for each answered question: Facebook's standard
    questions to their contact field, the rest to a custom field named after the key, unless
    the mapping says otherwise. Several answers to one question are joined with commas."""
    found = []
    for key, values in field_data:
        answer = ", ".join(v for v in values if v)
        if answer:
            found.append((key, answer, answer_target(key, mapping)))
    return found


def answer_target(key: str, mapping: dict | None) -> str:
    """Where the answer to this question goes: the mapping's word, else the default."""
    mapped = mapping.get(key) if isinstance(mapping, dict) else None
    return mapped or STANDARD_QUESTIONS.get(key) or f"fields.{key}"


def _custom_field(target: str) -> bool:
    name = target.removeprefix("fields.")
    return target.startswith("fields.") and bool(name.strip()) and len(name) <= MAX_KEY


def read_notification(body: bytes) -> tuple[list[LeadEvent], bool]:
    """(the leads a Page notification announces, whether it holds anything else);
    WebhookRejected(..., 400) when it cannot be read."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise WebhookRejected("The body is not JSON.", 400) from None
    if not isinstance(document, dict) or document.get("object") != "page":
        raise WebhookRejected('The body is not a notification of object "page".', 400)
    entries = document.get("entry")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise WebhookRejected("The notification has no list of entries.", 400)
    leads, other = [], False
    for entry in entries:
        changes = entry.get("changes", [])
        if not isinstance(changes, list) or not all(isinstance(c, dict) for c in changes):
            raise WebhookRejected("An entry's changes are not a list of objects.", 400)
        other = other or bool(entry.get("messaging"))
        for change in changes:
            if change.get("field") != "leadgen":
                other = True
                continue
            leads.append(lead_event(change.get("value"), entry.get("id")))
    return leads, other


def lead_event(value, entry_id=None) -> LeadEvent:
    """The lead a `leadgen` change announces (its page: the change's page_id, else the entry's id);
    WebhookRejected(..., 400) without a readable leadgen_id."""
    leadgen_id = str(value.get("leadgen_id")) if isinstance(value, dict) else ""
    if not GRAPH_ID.fullmatch(leadgen_id):
        raise WebhookRejected("A leadgen change has no readable leadgen_id.", 400)
    return LeadEvent(leadgen_id=leadgen_id, form_id=_optional_id(value.get("form_id")),
                     page_id=_optional_id(value.get("page_id")) or _optional_id(entry_id),
                     ad_id=_optional_id(value.get("ad_id")), created_time=_moment(value.get("created_time")))


def fetched_lead(body: dict, leadgen_id: str, form_id: str | None = None) -> FetchedLead:
    """A lead from Graph's answer. Answers are text with NUL characters removed; anything else is dropped."""
    answers = []
    for item in body.get("field_data") if isinstance(body.get("field_data"), list) else []:
        name = _text(item.get("name")) if isinstance(item, dict) else ""
        values = item.get("values") if isinstance(item, dict) and isinstance(item.get("values"), list) else []
        if name and len(name) <= MAX_KEY:
            answers.append((name, tuple(_text(v) for v in values if isinstance(v, (str, int, float)))))
    return FetchedLead(leadgen_id=leadgen_id, form_id=_optional_id(body.get("form_id")) or form_id,
                       ad_id=_optional_id(body.get("ad_id")), created_time=_moment(body.get("created_time")),
                       field_data=tuple(answers))


def _graph_id(value: str, what: str) -> str:
    if not GRAPH_ID.fullmatch(str(value)):
        raise GiveUp(f"The {what} ID {str(value)[:40]!r} is not a Facebook ID (a number).")
    return str(value)


def _optional_id(value) -> str | None:
    return str(value) if value is not None and GRAPH_ID.fullmatch(str(value)) else None


def _data(body: dict) -> list[dict]:
    data = body.get("data")
    if not isinstance(data, list):
        raise RetryLater("Meta answered without the list it was asked for (no data).")
    return [item for item in data if isinstance(item, dict)]


def _text(value) -> str:
    return str(value).replace("\x00", "").strip() if value is not None else ""


def _moment(value) -> float | None:
    """Unix time from Graph's forms of it: a Unix number (webhooks) or "2024-01-01T12:00:00+0000"."""
    moment = None
    if isinstance(value, (int, float)) and not isinstance(value, bool) or isinstance(value, str) and value.isdigit():
        moment = float(value)
    elif isinstance(value, str):
        try:
            moment = datetime.strptime(value, "%Y-%m-%dT%H:%M:%S%z").timestamp()
        except ValueError:
            pass
    return moment if moment is not None and 0 < moment < LATEST_MOMENT else None


def _named(name) -> str:
    return f" ({name})" if name else ""


def _expiry(expires_at) -> str:
    """debug_token's expires_at: 0 means the token never expires."""
    try:
        moment = int(expires_at)
    except (TypeError, ValueError):
        return "expiry not reported"
    if moment == 0:
        return "never expires"
    return f"expires on {datetime.fromtimestamp(moment, timezone.utc):%Y-%m-%d %H:%M} UTC"
