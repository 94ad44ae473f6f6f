from ..base import Field, GiveUp, Provider, ProviderError, RetryLater, UseAnotherProvider
from ..net import call
from . import SENDER_FIELDS

# Mandrill answers errors with HTTP 500 (historically all of them) and
# {"status": "error", "code": ..., "name": ..., "message": ...}: the name, not the status, says whether a retry helps.
MANDRILL_BAD_KEY = {"Invalid_Key"}
MANDRILL_ACCOUNT_PROBLEMS = {"PaymentRequired", "Unknown_Subaccount", "PoorReputation"}
MANDRILL_TRANSIENT = {"GeneralError", "ServiceUnavailable"}


class MailchimpTransactional(Provider):
    integration_type = "email"
    name = "mailchimp"
    label = "Mailchimp Transactional (Mandrill)"
    receives_webhooks = True
    fields = SENDER_FIELDS + (
        Field("api_key", "API key", "secret", required=True),
    )

    def post(self, path: str, payload: dict):
        """One Mandrill API call (all are POST with the key in the JSON body), errors typed by their name."""
        error = {}

        def describe(response) -> str:
            body = response.json()
            if isinstance(body, dict) and body.get("status") == "error" and body.get("name"):
                error.update(name=str(body["name"]), message=str(body.get("message") or ""))
            return error.get("message", "")

        try:
            return call("POST", f"{self.settings.api_base('MANDRILL_API_BASE')}{path}", timeout=self.settings.timeout,
                        provider_label=self.label, describe_error=describe, json=payload)
        except ProviderError as exc:
            if not error:
                raise
            raise mandrill_error(error["name"], error["message"], exc) from None

    def check(self, config, secrets):
        # users/ping proves the key without sending anything; Mandrill answers the JSON string "PONG!".
        response = self.post("/users/ping", {"key": secrets["api_key"]})
        try:
            answer = response.json()
        except ValueError:
            answer = response.text.strip()
        if answer != "PONG!":
            raise RetryLater(f"{self.label} answered the ping with something unexpected.")
        return "API key accepted: Mailchimp Transactional answered the ping."


def mandrill_error(name: str, message: str, exc: ProviderError) -> ProviderError:
    """The typed error for one of Mandrill's named errors."""
    label = MailchimpTransactional.label
    detail = f": {message}" if message else "."
    status = exc.http_status
    if name in MANDRILL_BAD_KEY:
        return UseAnotherProvider(f"{label} refused the API key (bad credentials){detail}", http_status=status)
    if name in MANDRILL_ACCOUNT_PROBLEMS:
        return UseAnotherProvider(f"{label} cannot serve this account ({name}){detail}", http_status=status)
    if name in MANDRILL_TRANSIENT or status == 429:
        return RetryLater(f"{label} had a temporary problem ({name}){detail}", retry_after=exc.retry_after,
                          http_status=status)
    return GiveUp(f"{label} rejected the request ({name}){detail}", http_status=status)
