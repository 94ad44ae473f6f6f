from ..aws import AWS_FIELDS, aws_client
from ..aws_errors import aws_errors
from ..base import Provider
from . import SENDER_FIELDS


class AmazonSNS(Provider):
    integration_type = "sms"
    name = "sns"
    label = "Amazon SNS"
    fields = SENDER_FIELDS + AWS_FIELDS

    def check(self, config, secrets):
        # Reading the account's SMS settings proves the keys (SigV4) and sends nothing.
        with aws_errors(self.label, self.settings.timeout):
            attributes = aws_client("sns", self.settings, config, secrets).get_sms_attributes(
                attributes=["MonthlySpendLimit", "DefaultSMSType"]).get("attributes") or {}
        details = []
        if attributes.get("MonthlySpendLimit"):
            details.append(f"monthly SMS spend limit {attributes['MonthlySpendLimit']} USD")
        if attributes.get("DefaultSMSType"):
            details.append(f"default message type {attributes['DefaultSMSType']}")
        return f"Access key {config['access_key_id']} accepted in {config['region']}" + \
            (f"; {', '.join(details)}." if details else ".")
