"""What the connection-test tests share: run a test through the API and a real worker, judge the outcome."""
import base64
import json

from werkzeug import Response


def json_response(body, status=200):
    return Response(json.dumps(body), status=status, content_type="application/json")


def basic_auth(request):
    """(user, password) from an Authorization: Basic header, or None."""
    header = request.headers.get("Authorization", "")
    if not header.startswith("Basic "):
        return None
    user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    return user, password


def create_configured(api, integration_type, provider, slug, fields):
    created = api.post("/api/integrations/", json={"integration_type": integration_type, "name": provider,
                                                   "provider": provider})
    assert created.status_code == 201, created.json
    r = api.post(f"/api/integrations/{created.json['id']}/configure/{slug}/", json=fields)
    assert r.status_code == 200, r.json
    return created.json["id"]


def run_check(api, run_jobs, integration_id):
    """Start a connection test, run the worker, return (integration, test result) as the API shows them."""
    r = api.post(f"/api/integrations/{integration_id}/test/")
    assert r.status_code == 202, r.json
    run_jobs()
    result = api.get(f"/api/integrations/{integration_id}/test/{r.json['job_id']}/").json
    return api.get(f"/api/integrations/{integration_id}/").json, result


def assert_passed(data, result):
    assert result["status"] == "passed", result
    assert data["status"] == "active" and data["error_count"] == 0 and data["last_error"] is None


def assert_failed(data, result, *words):
    """The test failed with all `words` in plain text (no traceback); returns the error."""
    assert result["status"] == "failed", result
    assert data["status"] == "error" and data["error_count"] == 1
    for word in words:
        assert word in data["last_error"], data["last_error"]
    assert "Traceback" not in data["last_error"]
    assert data["last_error"] == result["message"]
    return data["last_error"]
