from rq import Retry

from ..services import delivery

# RQ reschedules a failed attempt after these intervals; our own attempt counter ends it.
DELIVERY_RETRY = Retry(max=delivery.MAX_ATTEMPTS - 1, interval=list(delivery.RETRY_INTERVALS))


def deliver_message(message_id: str) -> str:
    return delivery.deliver(message_id)
