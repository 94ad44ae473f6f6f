import json
from email.utils import formataddr

from botocore.exceptions import BotoCoreError, ClientError

from .. import sns_notifications as sns
from ..aws import AWS_FIELDS, aws_client
from ..aws_errors import aws_errors, provider_error
from ..base import (Field, GiveUp, OutboundMessage, Provider, ProviderError, SendResult, StatusEvent, UseAnotherProvider,
                    WebhookRejected)
from . import SENDER_FIELDS

MESSAGE_ID_TAG = "switchboard_message_id"  # an EmailTag, echoed in event notifications under mail.tags
# Errors of SendEmail that are this account's or identity's problem: another provider may well send it.
ACCOUNT_ERRORS = {
    "MailFromDomainNotVerifiedException": "the custom MAIL FROM domain of the sender is not verified",
    "SendingPausedException": "sending is paused for this account or configuration set",
    "AccountSuspendedException": "AWS has suspended sending for this account",
    "NotFoundException": "a resource it names (such as the configuration set) does not exist",
}
EVENT_WORDS = {"Send": "Accepted by Amazon SES", "Delivery": "Delivered", "Open": "Opened", "Click": "Link clicked",
               "Complaint": "Marked as spam by the recipient", "Reject": "Rejected by Amazon SES",
               "Rendering Failure": "Amazon SES could not render the template", "DeliveryDelay": "Delivery delayed",
               "Subscription": "Subscription preferences changed", "Bounce": "Bounced"}


class AmazonSES(Provider):
    integration_type = "email"
    name = "ses"
    label = "Amazon SES"
    receives_webhooks = True
    webhook_headers = ("x-amz-sns-message-type", "x-amz-sns-message-id", "x-amz-sns-topic-arn")
    has_test_mode = False  # SES has a mailbox simulator (recipients), not a test mode for real recipients
    # New production accounts start at 14 messages a second (sandbox accounts at 1): the connection test
    # reports the account's own MaxSendRate, to set here when it differs.
    default_rate_limit = 14.0
    fields = SENDER_FIELDS + AWS_FIELDS + (
        Field("configuration_set", "Configuration set", pattern=r"^[A-Za-z0-9_-]{1,64}$",
              pattern_message="A configuration set name has letters, digits, - and _ (at most 64).",
              help="The configuration set whose event destination publishes to SNS; without one, only the "
                   "identity's bounce, complaint and delivery notifications arrive."),
        Field("sns_topic_arn", "SNS topic ARN",
              pattern=r"^arn:aws(-cn|-us-gov)?:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_.-]{1,256}$",
              pattern_message="Enter an ARN such as arn:aws:sns:us-east-1:123456789012:ses-events.",
              help="The topic SES publishes events to. When set, notifications from any other topic are refused "
                   "and only its subscription is confirmed."),
    )

    def check(self, config, secrets):
        # GetAccount proves the key pair (SigV4) and shows whether the account may send; it sends nothing.
        region = config["region"]
        with aws_errors(self.label, self.settings.timeout):
            try:
                account = aws_client("sesv2", self.settings, config, secrets).get_account()
            except ClientError as exc:
                if (exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode") != 404:
                    raise
                # Only SES stand-ins (AWS_ENDPOINT_URL, such as moto) lack GetAccount; SES v1's quota call
                # proves the key pair there just as well.
                quota = aws_client("ses", self.settings, config, secrets).get_send_quota()
                return f"Credentials accepted by Amazon SES in {region}; {describe_quota(quota)}."

        if not account.get("SendingEnabled", True):
            raise UseAnotherProvider(f"Amazon SES accepted the credentials, but sending is paused for this account "
                                     f"in {region}.")
        if account.get("EnforcementStatus") == "SHUTDOWN":
            raise UseAnotherProvider(f"Amazon SES accepted the credentials, but AWS has shut down sending for this "
                                     f"account in {region}.")
        parts = [f"Credentials accepted by Amazon SES in {region}; sending is enabled"]
        if not account.get("ProductionAccessEnabled", True):
            parts.append("the account is in the SES sandbox, so mail goes only to verified addresses")
        if account.get("EnforcementStatus") == "PROBATION":
            parts.append("AWS has put the account on probation")
        if account.get("SendQuota"):
            parts.append(describe_quota(account["SendQuota"]))
        return "; ".join(parts) + "."

    def send(self, config, secrets, message: OutboundMessage, *, sandbox):
        body = {}
        if message.body:
            body["Text"] = {"Data": message.body, "Charset": "UTF-8"}
        if message.html:
            body["Html"] = {"Data": message.html, "Charset": "UTF-8"}
        request = {
            "FromEmailAddress": formataddr((config.get("from_name") or "", config["from_email"])),
            "Destination": {"ToAddresses": [message.to]},
            "Content": {"Simple": {"Subject": {"Data": message.subject or "", "Charset": "UTF-8"}, "Body": body}},
            "EmailTags": [{"Name": MESSAGE_ID_TAG, "Value": message.id}],
        }
        if config.get("reply_to"):
            request["ReplyToAddresses"] = [config["reply_to"]]
        if config.get("configuration_set"):
            request["ConfigurationSetName"] = config["configuration_set"]
        try:
            answer = aws_client("sesv2", self.settings, config, secrets).send_email(**request)
        except (ClientError, BotoCoreError) as exc:
            raise send_error(exc, config["from_email"], self.settings.timeout) from None
        return SendResult(provider_message_id=answer.get("MessageId"))

    def verify_webhook(self, config, secrets, request):
        sns.verify(request, self.settings, topic_arn=config.get("sns_topic_arn") or None)

    def webhook_dedup_key(self, request):
        return "sns:" + sns.parse_message(request.body)["MessageId"]  # SNS keeps it across its retries

    def parse_webhook(self, config, request):
        message = sns.parse_message(request.body)
        if message["Type"] == "SubscriptionConfirmation":
            return [StatusEvent(dedup_key=message["MessageId"], status=None,
                                description=f"Amazon SNS asks to confirm the subscription to {message['TopicArn']}.",
                                data={"subscribe_url": str(message.get("SubscribeURL") or ""),
                                      "topic_arn": message["TopicArn"]})]
        if message["Type"] != "Notification":
            return []  # an UnsubscribeConfirmation changes no message
        try:
            event = json.loads(message["Message"])
        except ValueError:
            # Such as "Successfully validated SNS topic for Amazon SES event publishing.": about no message.
            return []
        if not isinstance(event, dict):
            return []
        return [status_event(event, message["MessageId"])]

    def act_on_event(self, config, secrets, event):
        if not event.data.get("subscribe_url"):
            return
        # Confirm only the topic this integration names: otherwise anyone could subscribe our URL to
        # a topic of theirs and post AWS-signed notifications to it.
        if not config.get("sns_topic_arn"):
            raise WebhookRejected("A subscription was not confirmed: set the SNS topic ARN on this integration "
                                  "first, then replay this event.")
        sns.confirm_subscription(event.data["subscribe_url"], self.settings)


def send_error(exc: Exception, from_email: str, timeout: float) -> ProviderError:
    """SendEmail's failures: the recipient's or content's problem gives up, the account's moves on."""
    label = AmazonSES.label
    if not isinstance(exc, ClientError):
        return provider_error(exc, label, timeout)
    error = exc.response.get("Error") or {}
    code, text = str(error.get("Code") or ""), " ".join(str(error.get("Message") or "").split())
    status = (exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    if code in ACCOUNT_ERRORS:
        return UseAnotherProvider(f"{label} cannot send for this account: {ACCOUNT_ERRORS[code]} ({code}: {text}).",
                                  http_status=status)
    if code == "MessageRejected":
        # In the SES sandbox an unverified recipient is refused this way, but so is an unverified sender.
        if from_email.lower() in text.lower():
            return UseAnotherProvider(f"{label} refused the sender {from_email}: {text}", http_status=status)
        return GiveUp(f"{label} rejected the message: {text}", http_status=status)
    return provider_error(exc, label, timeout)


def status_event(event: dict, sns_message_id: str) -> StatusEvent:
    """One SES event (configuration-set eventType, or identity notificationType) as a StatusEvent."""
    kind = str(event.get("eventType") or event.get("notificationType") or "")
    mail = event.get("mail") if isinstance(event.get("mail"), dict) else {}
    tags = mail.get("tags") if isinstance(mail.get("tags"), dict) else {}
    tagged = tags.get(MESSAGE_ID_TAG)
    our_id = tagged[0] if isinstance(tagged, list) and tagged else None
    # Each event's details sit under its name in camel case ("deliveryDelay"); a rendering failure's under "failure".
    section = event.get("failure" if kind == "Rendering Failure" else kind[:1].lower() + kind[1:]) if kind else None
    section = section if isinstance(section, dict) else {}
    status, words, detail = None, EVENT_WORDS.get(kind, kind or "Amazon SES event"), ""
    if kind == "Delivery":
        status, detail = "delivered", section.get("smtpResponse")
    elif kind == "Bounce":
        bounce_type = section.get("bounceType") or "Undetermined"
        recipients = section.get("bouncedRecipients") if isinstance(section.get("bouncedRecipients"), list) else []
        diagnostics = "; ".join(str(r.get("diagnosticCode") or r.get("status") or "") for r in recipients
                                if isinstance(r, dict) and (r.get("diagnosticCode") or r.get("status")))
        if bounce_type == "Permanent":
            status, words = "bounced", f"Bounced ({bounce_type}, {section.get('bounceSubType') or 'General'})"
        else:
            words = f"Soft bounce ({bounce_type}, {section.get('bounceSubType') or 'General'})"
        detail = diagnostics
    elif kind == "Open":
        status = "opened"
    elif kind == "Click":
        status, detail = "clicked", section.get("link")
    elif kind in ("Reject", "Rendering Failure"):
        status, detail = "failed", section.get("reason") or section.get("errorMessage")
    elif kind == "DeliveryDelay":
        detail = section.get("delayType")
    elif kind == "Complaint":
        detail = section.get("complaintFeedbackType")
    when = section.get("timestamp") or mail.get("timestamp")
    return StatusEvent(
        dedup_key=sns_message_id, status=status, description=f"{words}: {detail}" if detail else words,
        provider_message_id=str(mail["messageId"]) if mail.get("messageId") else None,
        message_id=str(our_id) if our_id else None,
        occurred_at=sns.parse_timestamp(when) if isinstance(when, str) else None,
        data={"event": kind, **({"bounce_type": section["bounceType"]} if section.get("bounceType") else {})})


def describe_quota(quota: dict) -> str:
    """SES's SendQuota (v2) or GetSendQuota answer (v1) in words: the fields are named alike."""
    per_day, per_second, sent = (quota.get(k) for k in ("Max24HourSend", "MaxSendRate", "SentLast24Hours"))
    words = []
    if per_day is not None:
        words.append("unlimited messages per 24 hours" if per_day < 0 else f"up to {per_day:,.0f} messages per 24 hours")
    if per_second is not None:
        words.append(f"{per_second:g} per second")
    text = " at ".join(words) or "no sending quota reported"
    return f"{text} ({sent:,.0f} sent in the last 24 hours)" if sent is not None else text
