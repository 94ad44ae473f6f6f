"""SendGrid connection test against a loopback server speaking SendGrid's wire format."""
import json
import time

import pytest
from werkzeug import Response

from app.extensions import db
from app.models import Integration, IntegrationLog
from tests.conftest import point_at

GOOD_KEY = "SG.good-key"


def sendgrid_scopes(request):
    if request.headers.get("Authorization") != f"Bearer {GOOD_KEY}":
        return Response(json.dumps({"errors": [{"field": None, "message": "authorization required"}]}),
                        status=401, content_type="application/json")
    return Response(json.dumps({"scopes": ["mail.send", "scopes.read"]}), content_type="application/json")


@pytest.fixture
def sendgrid(app, monkeypatch, httpserver):
    httpserver.expect_request("/v3/scopes", method="GET").respond_with_handler(sendgrid_scopes)
    point_at(app, monkeypatch, "SENDGRID_API_BASE", httpserver.url_for("/"))
    return httpserver


def make_sendgrid(api, key):
    created = api.post("/api/integrations/", json={"integration_type": "email", "name": "Mail", "provider": "sendgrid"}).json
    r = api.post(f"/api/integrations/{created['id']}/configure/email/", json={"from_email": "hi@example.com", "api_key": key})
    assert r.status_code == 200, r.json
    return created["id"]


def test_good_key_passes_and_sets_active(api, sendgrid, run_jobs):
    integration_id = make_sendgrid(api, GOOD_KEY)
    r = api.post(f"/api/integrations/{integration_id}/test/")
    assert r.status_code == 202
    job_id = r.json["job_id"]
    assert api.get(f"/api/integrations/{integration_id}/test/{job_id}/").json["status"] == "queued"
    run_jobs()
    result = api.get(f"/api/integrations/{integration_id}/test/{job_id}/").json
    assert result["status"] == "passed", result
    data = api.get(f"/api/integrations/{integration_id}/").json
    assert data["status"] == "active" and data["error_count"] == 0 and data["last_error"] is None


def test_bad_key_fails_in_plain_words_and_counts_errors(api, sendgrid, run_jobs):
    integration_id = make_sendgrid(api, "SG.wrong")
    for expected_count in (1, 2):
        api.post(f"/api/integrations/{integration_id}/test/")
        run_jobs()
        data = api.get(f"/api/integrations/{integration_id}/").json
        assert data["status"] == "error"
        assert data["error_count"] == expected_count
        assert "bad credentials" in data["last_error"] and "authorization required" in data["last_error"]
        assert "Traceback" not in data["last_error"]
    # A pass resets the count.
    api.post(f"/api/integrations/{integration_id}/configure/email/", json={"api_key": GOOD_KEY})
    api.post(f"/api/integrations/{integration_id}/test/")
    run_jobs()
    data = api.get(f"/api/integrations/{integration_id}/").json
    assert data["status"] == "active" and data["error_count"] == 0
    events = [e["event"] for e in api.get(f"/api/integrations/{integration_id}/logs/").json["items"]]
    assert "test_failed" in events and "test_passed" in events and "status_changed" in events


def test_key_without_mail_send_fails(api, app, monkeypatch, httpserver, run_jobs):
    httpserver.expect_request("/v3/scopes").respond_with_json({"scopes": ["stats.read"]})
    point_at(app, monkeypatch, "SENDGRID_API_BASE", httpserver.url_for("/"))
    integration_id = make_sendgrid(api, GOOD_KEY)
    api.post(f"/api/integrations/{integration_id}/test/")
    run_jobs()
    assert "Mail Send" in api.get(f"/api/integrations/{integration_id}/").json["last_error"]


def test_unreachable_host_and_timeout(api, app, monkeypatch, httpserver, run_jobs):
    point_at(app, monkeypatch, "SENDGRID_API_BASE", "http://127.0.0.1:9")  # nothing listens on the discard port
    integration_id = make_sendgrid(api, GOOD_KEY)
    api.post(f"/api/integrations/{integration_id}/test/")
    run_jobs()
    assert "unreachable" in api.get(f"/api/integrations/{integration_id}/").json["last_error"]

    httpserver.expect_request("/v3/scopes").respond_with_handler(lambda r: time.sleep(1.5) or Response("{}"))
    point_at(app, monkeypatch, "SENDGRID_API_BASE", httpserver.url_for("/"))
    monkeypatch.setitem(app.config, "PROVIDER_TIMEOUT_SECONDS", 0.5)
    api.post(f"/api/integrations/{integration_id}/test/")
    run_jobs()
    assert "timeout" in api.get(f"/api/integrations/{integration_id}/").json["last_error"]
    # The server logs the request when its slow handler ends: wait for that here, or it lands in
    # the log of whichever test shares the server next.
    deadline = time.monotonic() + 5
    while not httpserver.log and time.monotonic() < deadline:
        time.sleep(0.05)


def test_deleted_before_the_job_runs_is_harmless(api, sendgrid, run_jobs):
    integration_id = make_sendgrid(api, GOOD_KEY)
    api.post(f"/api/integrations/{integration_id}/test/")
    assert api.delete(f"/api/integrations/{integration_id}/").status_code == 204
    run_jobs()
    assert db.session.get(Integration, integration_id) is None
    assert db.session.query(IntegrationLog).count() == 0
