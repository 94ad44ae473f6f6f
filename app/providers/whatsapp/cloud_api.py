from ..base import Field, GiveUp, Provider, UseAnotherProvider
from ..meta import graph_get

DIGITS = r"^\d{5,20}$"
MAX_NUMBER_PAGES = 10  # 1,000 numbers; beyond that the check does not read the whole list


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

    def check(self, config, secrets):
        # Reading the phone number proves the token and shows the number; nothing is sent.
        auth = {"Authorization": f"Bearer {secrets['access_token']}"}
        number_id, waba_id = config["phone_number_id"], config["business_account_id"]
        number = graph_get(self.settings, number_id, provider_label=self.label, headers=auth,
                           params={"fields": "display_phone_number,verified_name,quality_rating"})
        shown = number.get("display_phone_number") or number_id
        name, quality = number.get("verified_name"), number.get("quality_rating")
        found = f"Access token accepted for {shown}" + (f" ({name})" if name else "") + \
            (f", quality rating {quality}" if quality else "")
        try:
            belongs = self._belongs_to(waba_id, number_id, auth)
        except UseAnotherProvider:  # the token may send without being allowed to list the account's numbers
            return f"{found}; the token may not list the numbers of business account {waba_id}, so that was not confirmed."
        if belongs is False:
            raise GiveUp(f"The phone number ID {number_id} is not one of the numbers of WhatsApp Business Account "
                         f"{waba_id}: check both IDs under API Setup in the Meta App Dashboard.")
        return f"{found}, in business account {waba_id}."

    def _belongs_to(self, waba_id, number_id, auth) -> bool | None:
        """Whether the number is one of the business account's; None when there are too many to read."""
        params = {"fields": "id", "limit": 100}
        for _ in range(MAX_NUMBER_PAGES):
            page = graph_get(self.settings, f"{waba_id}/phone_numbers", provider_label=self.label,
                             headers=auth, params=params)
            if any(isinstance(n, dict) and str(n.get("id")) == number_id for n in page.get("data") or []):
                return True
            paging = page.get("paging") or {}
            after = (paging.get("cursors") or {}).get("after")
            if not after or not paging.get("next"):
                return False
            params = {**params, "after": after}
        return None
