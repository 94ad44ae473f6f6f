from ..base import Field, Provider, UseAnotherProvider
from ..net import call, json_body
from . import SENDER_FIELDS


class SendGrid(Provider):
    integration_type = "email"
    name = "sendgrid"
    label = "SendGrid"
    receives_webhooks = True
    fields = SENDER_FIELDS + (
        Field("api_key", "API key", "secret", required=True, help="Needs the Mail Send permission."),
    )

    def check(self, config, secrets):
        # GET /v3/scopes proves the key and shows its permissions without sending anything.
        response = call("GET", f"{self.settings.api_base('SENDGRID_API_BASE')}/v3/scopes", timeout=self.settings.timeout,
                        provider_label=self.label, describe_error=sendgrid_error,
                        headers={"Authorization": f"Bearer {secrets['api_key']}", "Accept": "application/json"})
        scopes = json_body(response, self.label).get("scopes") or []
        if "mail.send" not in scopes:
            raise UseAnotherProvider("The SendGrid API key is valid but lacks the Mail Send permission.")
        return f"API key accepted with {len(scopes)} permissions, including Mail Send."


def sendgrid_error(response) -> str:
    """SendGrid errors: {"errors": [{"message": "...", "field": "..."}]}."""
    errors = response.json().get("errors") or []
    return "; ".join(e.get("message", "") for e in errors if isinstance(e, dict))
