from ..base import Field, Provider
from ..net import call, json_body
from . import SENDER_FIELDS


class Vonage(Provider):
    integration_type = "sms"
    name = "vonage"
    label = "Vonage (Nexmo)"
    receives_webhooks = True
    fields = SENDER_FIELDS + (
        Field("api_key", "API key", required=True, pattern=r"^[A-Za-z0-9]{4,32}$",
              pattern_message="A Vonage API key is letters and digits."),
        Field("api_secret", "API secret", "secret", required=True),
    )

    def check(self, config, secrets):
        # The account balance proves the key and secret; Basic auth keeps the secret out of the URL.
        response = call("GET", f"{self.settings.api_base('VONAGE_API_BASE')}/account/get-balance",
                        timeout=self.settings.timeout, provider_label=self.label, describe_error=vonage_error,
                        auth=(config["api_key"], secrets["api_secret"]), headers={"Accept": "application/json"})
        body = json_body(response, self.label)
        try:
            balance = f"{float(body['value']):.2f} EUR"
        except (KeyError, TypeError, ValueError):
            balance = "not reported"
        reload = ", with auto-reload" if body.get("autoReload") else ""
        return f"API key {config['api_key']} accepted; balance {balance}{reload}."


def vonage_error(response) -> str:
    """Vonage errors: {"error-code", "error-code-label"} (account API) or RFC 7807 {"title", "detail"}."""
    body = response.json()
    words = [str(body[k]).strip() for k in ("error-code-label", "title", "detail", "error_title") if body.get(k)]
    return ": ".join(dict.fromkeys(words))
