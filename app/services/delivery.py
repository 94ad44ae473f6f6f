"""Delivering one message: claim it, pace it, send it, fail over, retry with backoff, record everything.

A message is claimed by moving it from queued/scheduled to sending in one conditional UPDATE,
so a duplicated or retried job never sends it twice.
"""
from __future__ import annotations

import uuid
from datetime import timedelta

from flask import current_app
from rq.job import Job
from sqlalchemy import and_, or_, select, update

from ..extensions import db
from ..models import Integration, Message, utcnow
from ..providers.base import GiveUp, OutboundMessage, ProviderError, RetryLater, SendResult
from ..queue import redis_connection, task_queue
from . import integrations as svc
from .alerts import email_admins
from .messaging import add_event, enqueue
from .pacing import Pacer, collection_paused

MAX_ATTEMPTS = 5
RETRY_INTERVALS = (10, 30, 90, 270)  # seconds before attempts 2..5: exponential backoff
FAILURES_BEFORE_ERROR = 5  # provider-side failures in a row that mark an integration as in error
MAX_PACING_WAIT = 30.0
BULK_LOST_AFTER_MINUTES = 30
PACED_REQUEUE_SECONDS = 1


class TryAgain(Exception):
    """Raised by the job so that RQ's Retry schedules the next attempt."""


class Paced(Exception):
    """The integration's rate limit has no slot soon: not the provider's fault, not an attempt."""


def claim(message_id: str) -> Message | None:
    """Move the message from queued/scheduled to sending in one statement; None if another job has it."""
    now = utcnow()
    message = db.session.scalars(
        update(Message).where(Message.id == message_id, Message.status.in_(("queued", "scheduled")))
        .values(status="sending", sending_started_at=now, attempts=Message.attempts + 1, updated_at=now)
        .returning(Message), execution_options={"populate_existing": True}
    ).first()
    db.session.commit()
    return message


def candidates(message: Message) -> list[Integration]:
    """The message's integration first (if still active), then the other active ones of its type by priority."""
    return list(db.session.scalars(
        select(Integration).where(Integration.organization_id == message.organization_id,
                                  Integration.integration_type == message.channel, Integration.is_active.is_(True))
        .order_by((Integration.id == (message.integration_id or 0)).desc(), Integration.priority, Integration.id)))


def outbound(message: Message, integration: Integration) -> OutboundMessage:
    return OutboundMessage(id=message.id, channel=message.channel, to=message.recipient, subject=message.subject,
                           body=message.body, html=message.html, template=message.template,
                           media_url=message.media_url, status_callback_url=svc.webhook_url(integration))


def send_through(integration: Integration, message: Message) -> SendResult:
    adapter = svc.adapter_for(integration)
    rate = integration.rate_limit or adapter.default_rate_limit
    # Everything the call needs is ready before the pacer clears the send: the request leaves right
    # after the moment the pacer logs as its departure.
    secrets, outgoing = svc.get_secrets(integration), outbound(message, integration)
    with collection_paused():
        try:
            Pacer(redis_connection()).acquire(f"integration:{integration.id}", rate, max_wait=MAX_PACING_WAIT)
        except TimeoutError:
            raise Paced() from None
        if integration.sandbox and not adapter.has_test_mode:
            return SendResult(provider_message_id=None, sandboxed=True)  # stop before the network call
        return adapter.send(integration.config or {}, secrets, outgoing, sandbox=integration.sandbox)


def deliver(message_id: str) -> str:
    message = claim(message_id)
    if message is None:
        return "not claimable"  # already sent, sending elsewhere, or gone
    line = candidates(message)
    if not line:
        return fail(message, f"There is no active {message.channel} integration to send through.")
    failures: list[ProviderError] = []
    for position, integration in enumerate(line):
        add_event(message, "sending", f"Attempt {message.attempts} through {integration.name}.",
                  integration_id=integration.id)
        try:
            result = send_through(integration, message)
        except Paced:
            return wait_for_pace(message)
        except GiveUp as exc:  # the recipient or content is wrong: no other provider will do better
            message.integration_id = integration.id
            return fail(message, exc.reason, integration_id=integration.id)
        except ProviderError as exc:
            failures.append(exc)
            provider_failed(integration, exc)
            following = line[position + 1] if position + 1 < len(line) else None
            add_event(message, "failover" if following else "error",
                      f"{integration.name} failed: {exc.reason}"
                      + (f" Moving to {following.name}." if following else ""), integration_id=integration.id)
            db.session.commit()
            continue
        except Exception:  # a bug of ours: the attempt ends in words, the traceback goes to the log
            current_app.logger.exception("sending message %s crashed", message.id)
            failures.append(RetryLater("Sending failed unexpectedly inside Switchboard; the error was logged."))
            continue
        return sent(message, integration, result)
    return retry_or_fail(message, failures)


def wait_for_pace(message: Message) -> str:
    """Back in line shortly, without counting an attempt: a bulk send larger than the pace waits its turn."""
    db.session.rollback()  # drop the "sending" event of this turn
    message = db.session.get(Message, message.id)
    message.status, message.attempts = "queued", message.attempts - 1
    db.session.commit()
    from ..jobs.messages import DELIVERY_RETRY, deliver_message
    task_queue().enqueue_in(timedelta(seconds=PACED_REQUEUE_SECONDS), deliver_message, message.id,
                            job_id=f"{message.id}-paced-{uuid.uuid4().hex[:8]}", retry=DELIVERY_RETRY)
    return "paced"


def sent(message: Message, integration: Integration, result: SendResult) -> str:
    now = utcnow()
    message.status = "sandboxed" if result.sandboxed else "sent"
    message.provider_message_id = result.provider_message_id
    message.integration_id, message.sent_at, message.last_error = integration.id, now, None
    integration.consecutive_failures = 0
    words = (f"Sandboxed by {integration.name}: accepted, not delivered." if result.sandboxed
             else f"Sent through {integration.name}" + (f" (provider id {result.provider_message_id})."
                                                        if result.provider_message_id else "."))
    add_event(message, message.status, words, integration_id=integration.id)
    db.session.commit()
    return message.status


def fail(message: Message, reason: str, *, integration_id: int | None = None) -> str:
    message.status, message.last_error = "failed", reason
    add_event(message, "failed", reason, integration_id=integration_id)
    db.session.commit()
    return "failed"


def retry_or_fail(message: Message, failures: list[ProviderError]) -> str:
    reason = failures[-1].reason
    if message.attempts >= MAX_ATTEMPTS:
        return fail(message, f"Gave up after {message.attempts} attempts: {reason}")
    delay = RETRY_INTERVALS[message.attempts - 1]
    asked = max((f.retry_after or 0 for f in failures), default=0)
    message.status, message.last_error = "queued", reason
    if asked > delay:  # honour the provider's Retry-After when it asks for longer than our backoff
        add_event(message, "retry", f"Will try again in {asked:g} s, as the provider asked.")
        db.session.commit()
        from ..jobs.messages import DELIVERY_RETRY, deliver_message
        task_queue().enqueue_in(timedelta(seconds=asked), deliver_message, message.id,
                                job_id=f"{message.id}-{message.attempts}", retry=DELIVERY_RETRY)
        return "queued"
    add_event(message, "retry", f"Will try again in {delay} s.")
    db.session.commit()
    raise TryAgain(reason)


def provider_failed(integration: Integration, exc: ProviderError) -> None:
    """Count a provider-side failure; enough in a row mark the integration in error and tell the admins."""
    integration.consecutive_failures += 1
    integration.last_error = exc.reason
    if integration.consecutive_failures >= FAILURES_BEFORE_ERROR and integration.status != "error":
        integration.error_count += 1
        svc.set_status(integration, "error",
                       f"{integration.consecutive_failures} sends in a row failed; the last: {exc.reason}")
        tell_admins(integration, exc.reason)


def tell_admins(integration: Integration, reason: str) -> None:
    """Email the organisation's admins through another active email integration, if it has one."""
    email_admins(integration.organization_id, f"Switchboard: {integration.name} is failing",
                 f"Sending through {integration.name} failed {integration.consecutive_failures} times in a row.\n"
                 f"The last error: {reason}\n\nOpen Switchboard to check its credentials and run a connection test.",
                 excluding={integration.id})


INTERRUPTED = ("The worker stopped while sending. The provider may have accepted it, so it was not sent again "
               "(no duplicates); its status webhook will still update it.")


def sweep() -> dict[str, int]:
    """Every minute: queue messages whose job was lost (Redis was down), and end sends a dead
    worker left half-done without sending them again."""
    now = utcnow()
    # A bulk send's later batches may wait long in line, so its messages count as lost only much later.
    waiting = db.session.scalars(select(Message).where(
        Message.status == "queued",
        or_(Message.updated_at < now - timedelta(minutes=BULK_LOST_AFTER_MINUTES),
            and_(Message.bulk_id.is_(None), Message.updated_at < now - timedelta(minutes=2))))
        .limit(5000)).all()
    requeued = [m for m in waiting if not Job.exists(m.id, connection=redis_connection())]
    for message in requeued:
        enqueue(message)
    stuck = db.session.scalars(select(Message).where(Message.status == "sending",
                                                     Message.sending_started_at < now - timedelta(minutes=10))).all()
    for message in stuck:
        message.status, message.last_error = "failed", INTERRUPTED
        add_event(message, "failed", INTERRUPTED)
    db.session.commit()
    return {"messages": len(requeued), "interrupted": len(stuck)}
