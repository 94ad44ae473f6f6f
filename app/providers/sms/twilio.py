from ..base import Field, Provider, UseAnotherProvider
from ..net import call, json_body
from . import SENDER_FIELDS


class Twilio(Provider):
    integration_type = "sms"
    name = "twilio"
    label = "Twilio"
    receives_webhooks = True
    fields = SENDER_FIELDS + (
        Field("account_sid", "Account SID", required=True, pattern=r"^AC[0-9a-fA-F]{32}$",
              pattern_message="An Account SID is AC followed by 32 hexadecimal characters."),
        Field("auth_token", "Auth token", "secret", required=True),
    )

    def check(self, config, secrets):
        # Fetching the account proves the SID and token and shows whether the account may send.
        sid = config["account_sid"]
        response = call("GET", f"{self.settings.api_base('TWILIO_API_BASE')}/2010-04-01/Accounts/{sid}.json",
                        timeout=self.settings.timeout, provider_label=self.label, describe_error=twilio_error,
                        auth=(sid, secrets["auth_token"]), headers={"Accept": "application/json"})
        account = json_body(response, self.label)
        name, status = account.get("friendly_name") or sid, str(account.get("status") or "unknown")
        if status != "active":
            raise UseAnotherProvider(f"The Twilio account \u201c{name}\u201d is {status}, so it cannot send messages: "
                                     "reactivate it in the Twilio Console.")
        trial = " It is a trial account: it can only send to verified numbers." if account.get("type") == "Trial" else ""
        return f"Account \u201c{name}\u201d is active.{trial}"


def twilio_error(response) -> str:
    """Twilio errors: {"code", "message", "more_info", "status"}, or RFC 9457 {"title", "detail", "code"}."""
    body = response.json()
    words = [str(body[k]).strip() for k in ("message", "title", "detail") if body.get(k)]
    text = ": ".join(dict.fromkeys(words))
    return f"{text} (Twilio error {body['code']})" if body.get("code") and text else text
