"""Inbox media, streamed from the storage interface: to signed-in users of the organisation, and,
for a while, to Meta through a signed link (files we send to Messenger and Instagram by link).

Files come from strangers, so they are never run in our origin: a sandboxing CSP, and anything
that is not a picture, a video, a sound or a PDF is offered as a download."""
import mimetypes
import re

from flask import Response, abort, current_app
from flask_login import current_user, login_required

from ..services import inbox
from ..storage import SHARED_PATH, NotStored, StorageError, key_from_shared_token, storage
from . import bp

SHOWN_INLINE = ("image/jpeg", "image/png", "image/gif", "image/webp", "video/mp4", "video/3gpp", "audio/mpeg",
                "audio/ogg", "audio/aac", "audio/mp4", "audio/amr", "application/pdf")


def file_response(chunks, mime_type: str, filename: str | None) -> Response:
    response = Response(chunks, mimetype=mime_type)
    disposition = "inline" if mime_type in SHOWN_INLINE else "attachment"
    if filename:  # a stranger's file name: plain characters only, so the header stays one header
        disposition += f'; filename="{re.sub(r"[^A-Za-z0-9._ -]", "_", filename)[:120]}"'
    response.headers["Content-Disposition"] = disposition
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response


@bp.get("/inbox/media/<int:message_id>")
@login_required
def message_media(message_id):
    found = inbox.media_file(current_user.organization_id, message_id)
    if found is None:
        abort(404)
    return file_response(found.chunks, found.mime_type, found.filename)


@bp.get(SHARED_PATH + "<token>")
def shared(token):
    key = key_from_shared_token(token, current_app.config["SHARED_MEDIA_SECONDS"])
    if key is None:
        abort(404)
    try:
        chunks = storage().stream(key)
    except NotStored:
        abort(404)
    except StorageError:
        abort(503)
    return file_response(chunks, mimetypes.guess_type(key)[0] or "application/octet-stream", None)
