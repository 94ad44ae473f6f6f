from ..aws import AWS_FIELDS
from ..base import Provider
from . import SENDER_FIELDS


class AmazonSNS(Provider):
    integration_type = "sms"
    name = "sns"
    label = "Amazon SNS"
    fields = SENDER_FIELDS + AWS_FIELDS
