import re

from ..aws import AWS_FIELDS, aws_client
from ..aws_errors import aws_errors
from ..base import Field, GiveUp, OutboundMessage, Provider, SendResult, UseAnotherProvider

# Words in a refusal that point at our own sender settings, not at the recipient: another integration may send.
# (InvalidParameter on PhoneNumber, the recipient, stays GiveUp.)
SENDER_WORDS = re.compile(r"origination|sender\s*id", re.IGNORECASE)


class AmazonSNS(Provider):
    integration_type = "sms"
    name = "sns"
    label = "Amazon SNS"
    # No delivery webhooks: SNS reports SMS delivery only to CloudWatch Logs (receives_webhooks stays False).
    default_rate_limit = 20.0  # SNS's default quota for SMS publishes: 20 a second per account and region
    fields = (
        # Optional here: SNS sends from AWS's shared routes when the account has no origination number.
        Field("from_phone_number", "Origination number", "phone", placeholder="+14155550100",
              help="A phone number of your AWS account, in international format (E.164). Leave it empty to let "
                   "AWS choose, where the destination country allows that."),
    ) + AWS_FIELDS

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

    def send(self, config, secrets, message: OutboundMessage, *, sandbox):
        # Per-message attributes, not SetSMSAttributes (which has a far lower rate limit).
        attributes = {"AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": "Transactional"}}
        if config.get("from_phone_number"):
            attributes["AWS.MM.SMS.OriginationNumber"] = {"DataType": "String",
                                                          "StringValue": config["from_phone_number"]}
        try:
            with aws_errors(self.label, self.settings.timeout):
                answer = aws_client("sns", self.settings, config, secrets).publish(
                    PhoneNumber=message.to, Message=message.body or "", MessageAttributes=attributes)
        except GiveUp as exc:
            if SENDER_WORDS.search(exc.reason):
                raise UseAnotherProvider(exc.reason, http_status=exc.http_status) from None
            raise
        return SendResult(provider_message_id=answer.get("MessageId"))
