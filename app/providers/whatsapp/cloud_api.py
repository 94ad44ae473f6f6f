from ..base import Field, Provider

DIGITS = r"^\d{5,20}$"


class WhatsAppCloudAPI(Provider):
    integration_type = "whatsapp"
    name = "cloud_api"
    label = "WhatsApp Cloud API"
    receives_webhooks = True
    fields = (
        Field("phone_number_id", "Phone number ID", required=True, pattern=DIGITS,
              pattern_message="The phone number ID is the number Meta shows under API Setup."),
        Field("business_account_id", "WhatsApp Business Account ID", required=True, pattern=DIGITS,
              pattern_message="The business account ID is a number."),
        Field("access_token", "Access token", "secret", required=True,
              help="A system user token with whatsapp_business_messaging."),
        Field("app_secret", "App secret", "secret", help="Used to verify the signature of Meta's webhooks."),
        Field("webhook_verify_token", "Webhook verify token", "generated",
              help="Paste this into the Meta App Dashboard with the webhook URL."),
    )
