from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from flask import current_app
from rq import Retry

from ..extensions import db
from ..models import Message
from ..queue import task_queue
from ..services import delivery

# RQ reschedules a failed attempt after these intervals; our own attempt counter ends it.
DELIVERY_RETRY = Retry(max=delivery.MAX_ATTEMPTS - 1, interval=list(delivery.RETRY_INTERVALS))
# A bulk send's messages go out in batches, each batch by a few threads of one job: the provider's
# latency overlaps and RQ's per-job work is paid once a batch, while pacing still holds per message.
BATCH_SIZE = 25
BATCH_THREADS = 4
BATCH_TIMEOUT = 300
# A batch whose worker died is run again once RQ sees it abandoned: what was sent is not claimable again.
BATCH_RETRY = Retry(max=2, interval=5)


def deliver_message(message_id: str) -> str:
    return delivery.deliver(message_id)


def deliver_batch(message_ids: list[str]) -> dict[str, int]:
    app = current_app._get_current_object()

    def one(message_id: str) -> str:
        with app.app_context():
            try:
                return delivery.deliver(message_id)
            except delivery.TryAgain:  # outside a job of its own: schedule the message's next attempt
                message = db.session.get(Message, message_id)
                task_queue().enqueue_in(timedelta(seconds=delivery.RETRY_INTERVALS[message.attempts - 1]),
                                        deliver_message, message_id, job_id=f"{message_id}-{message.attempts}",
                                        retry=DELIVERY_RETRY)
                return "queued"

    with ThreadPoolExecutor(max_workers=min(BATCH_THREADS, len(message_ids))) as pool:
        outcomes = list(pool.map(one, message_ids))
    return {outcome: outcomes.count(outcome) for outcome in set(outcomes)}
