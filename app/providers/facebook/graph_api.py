from ..base import Field, Provider

DIGITS = r"^\d{1,25}$"


class FacebookGraphAPI(Provider):
    integration_type = "facebook"
    name = "graph_api"
    label = "Facebook (Meta Graph API)"
    receives_webhooks = True
    fields = (
        Field("app_id", "App ID", required=True, pattern=DIGITS, pattern_message="Invalid App ID format: it must be numeric."),
        Field("app_secret", "App secret", "secret", required=True),
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
