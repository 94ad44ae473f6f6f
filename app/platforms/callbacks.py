"""Meta's data deletion and deauthorize callbacks (public: each request proves itself with a
signed_request signed by the organisation's App Secret) and the public deletion status page."""
from flask import abort, current_app, jsonify, render_template, request

from ..services import meta_app, meta_deletion
from . import callbacks_bp

MAX_BODY = 16 * 1024  # a signed_request is a few hundred bytes


@callbacks_bp.post("/api/meta/<public_id>/data-deletion/")
def data_deletion(public_id):
    return _callback(public_id, "deletion")


@callbacks_bp.post("/api/meta/<public_id>/deauthorize/")
def deauthorize(public_id):
    return _callback(public_id, "deauthorize")


def _callback(public_id: str, kind: str):
    app = meta_app.by_public_id(public_id) if len(public_id) <= 32 else None
    if app is None:
        current_app.logger.warning("Meta %s callback for unknown app address %r refused", kind, public_id[:40])
        return jsonify({"error": "No Meta app has this address."}), 404
    if (request.content_length or 0) > MAX_BODY:
        current_app.logger.warning("Meta %s callback of app %s refused: %s bytes", kind, app.id, request.content_length)
        return jsonify({"error": "The request body is larger than a signed_request needs."}), 413
    try:
        record = meta_deletion.handle(app, kind, request.form.get("signed_request"))
    except meta_deletion.CallbackRefused as exc:
        current_app.logger.warning("Meta %s callback of app %s refused: %s", kind, app.id, exc.reason)
        return jsonify({"error": exc.reason}), exc.status
    current_app.logger.info("Meta %s callback of app %s handled: %s", kind, app.id, record.confirmation_code)
    return jsonify({"url": meta_deletion.status_url(record), "confirmation_code": record.confirmation_code})


@callbacks_bp.get("/meta/deletion/<code>")
def deletion_status(code):
    record = meta_deletion.by_code(code) if len(code) <= 32 else None
    if record is None:
        abort(404)
    return render_template("platforms/deletion_status.html", record=record)
