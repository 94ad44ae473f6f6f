from ..aws import AWS_FIELDS
from ..base import Provider
from . import SENDER_FIELDS


class AmazonSES(Provider):
    integration_type = "email"
    name = "ses"
    label = "Amazon SES"
    receives_webhooks = True
    fields = SENDER_FIELDS + AWS_FIELDS
