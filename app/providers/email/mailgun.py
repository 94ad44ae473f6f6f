from ..base import Field, GiveUp, Provider, UseAnotherProvider
from ..net import call, json_body
from . import SENDER_FIELDS

REGION_BASES = {"us": "MAILGUN_API_BASE", "eu": "MAILGUN_EU_API_BASE"}


class Mailgun(Provider):
    integration_type = "email"
    name = "mailgun"
    label = "Mailgun"
    receives_webhooks = True
    fields = SENDER_FIELDS + (
        Field("domain", "Sending domain", required=True, placeholder="mg.example.com",
              pattern=r"^(?=.{1,253}$)([a-zA-Z0-9-]{1,63}\.)+[a-zA-Z]{2,63}$", pattern_message="Enter a domain such as mg.example.com."),
        Field("region", "Region", "choice", required=True, choices=(("us", "US"), ("eu", "EU")), default="us"),
        Field("api_key", "API key", "secret", required=True),
    )

    def api_base(self, config) -> str:
        return self.settings.api_base(REGION_BASES.get(config.get("region") or "us", "MAILGUN_API_BASE"))

    def check(self, config, secrets):
        # GET /v3/domains/{domain} proves the key and that the domain is in this account and region,
        # without sending anything.
        domain, region = config["domain"], (config.get("region") or "us").upper()
        try:
            response = call("GET", f"{self.api_base(config)}/v3/domains/{domain}", timeout=self.settings.timeout,
                            provider_label=self.label, describe_error=mailgun_error,
                            auth=("api", secrets["api_key"]), headers={"Accept": "application/json"})
        except GiveUp as exc:
            if exc.http_status != 404:
                raise
            raise UseAnotherProvider(
                f"The domain {domain} is not in this Mailgun account in the {region} region: "
                "check the domain name and the region.", http_status=404) from None
        info = json_body(response, self.label).get("domain") or {}
        state = str(info.get("state") or "unknown").lower()
        if state == "disabled":
            raise UseAnotherProvider(f"Mailgun has disabled the domain {domain}; "
                                     "it cannot send until Mailgun enables it again.")
        sentence = f"API key accepted; the domain {domain} is in this account in the {region} region"
        if state == "active":
            sentence += " and verified"
        elif state == "unverified":
            sentence += ", but it is not verified yet: finish its DNS records in Mailgun before sending"
        else:
            sentence += f" (state: {state})"
        if info.get("type") == "sandbox":
            sentence += "; it is a sandbox domain, so it only sends to authorised recipients"
        return sentence + "."


def mailgun_error(response) -> str:
    """Mailgun errors: {"message": "..."}, or a plain-text body such as "Forbidden"."""
    return str(response.json().get("message") or "")
