from ..base import Field, Provider
from ..net import call, json_body
from . import SENDER_FIELDS


class Plivo(Provider):
    integration_type = "sms"
    name = "plivo"
    label = "Plivo"
    receives_webhooks = True
    fields = SENDER_FIELDS + (
        Field("auth_id", "Auth ID", required=True, pattern=r"^[A-Z0-9]{20}$",
              pattern_message="A Plivo Auth ID is 20 capital letters and digits."),
        Field("auth_token", "Auth token", "secret", required=True),
    )

    def check(self, config, secrets):
        # Fetching the account proves the Auth ID and token without sending anything.
        auth_id = config["auth_id"]
        response = call("GET", f"{self.settings.api_base('PLIVO_API_BASE')}/v1/Account/{auth_id}/",
                        timeout=self.settings.timeout, provider_label=self.label, describe_error=plivo_error,
                        auth=(auth_id, secrets["auth_token"]), headers={"Accept": "application/json"})
        account = json_body(response, self.label)
        name = account.get("name") or auth_id
        try:
            credits = f"; cash credits {float(account['cash_credits']):.2f}"
        except (KeyError, TypeError, ValueError):
            credits = ""
        return f"Account \u201c{name}\u201d accepted{credits}."


def plivo_error(response) -> str:
    """Plivo errors: {"api_id": "...", "error": "..."} (error may also be an object of messages)."""
    error = response.json().get("error")
    if isinstance(error, dict):
        return "; ".join(f"{k}: {v}" for k, v in error.items())
    return str(error or "")
