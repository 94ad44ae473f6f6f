from datetime import datetime, timezone

from ..base import Field, GiveUp, Provider, UseAnotherProvider
from ..meta import TOKEN_SUBCODES, graph_get

DIGITS = r"^\d{1,25}$"
APP_REFUSED = "Meta refused the app ID and app secret (bad credentials)"
# The permissions each feature cannot work without.
FEATURE_SCOPES = (("enable_lead_ads", "Lead Ads", "leads_retrieval"), ("enable_messenger", "Messenger", "pages_messaging"))


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
        Field("trigger_campaign_on_lead", "Campaign to start on a new lead",
              help="The name of a campaign; campaigns arrive with lead capture."),
    )

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
