"""Connection tests of the SMS, WhatsApp and Facebook adapters, each against a real server on
loopback speaking the provider's wire format (moto for AWS), through the JSON API and a real RQ worker."""
import re

import pytest

from tests.conftest import point_at
from tests.providers.checks import assert_failed, assert_passed, basic_auth, create_configured, json_response, run_check

FROM = "+14155552671"


def run_new_check(api, run_jobs, integration_type, provider, slug, fields):
    """Create and configure an integration, run its connection test; return (integration, test result)."""
    return run_check(api, run_jobs, create_configured(api, integration_type, provider, slug, fields))


# --- Twilio -------------------------------------------------------------------------------

TWILIO_SID = "AC" + "0123456789abcdef" * 2
TWILIO_SUSPENDED_SID = "AC" + "fedcba9876543210" * 2
TWILIO_TOKEN = "twilio-auth-token"


def twilio_api(request):
    match = re.fullmatch(r"/2010-04-01/Accounts/(AC[0-9a-f]{32})\.json", request.path)
    sid = match and match.group(1)
    if basic_auth(request) not in ((TWILIO_SID, TWILIO_TOKEN), (TWILIO_SUSPENDED_SID, TWILIO_TOKEN)) or \
            basic_auth(request)[0] != sid:
        return json_response({"code": 20003, "detail": "Your AccountSid or AuthToken was incorrect.",
                              "message": "Authenticate", "more_info": "https://www.twilio.com/docs/errors/20003",
                              "status": 401}, 401)
    suspended = sid == TWILIO_SUSPENDED_SID
    return json_response({
        "auth_token": TWILIO_TOKEN, "date_created": "Tue, 27 Nov 2018 16:14:39 +0000",
        "friendly_name": "Acme Dental" if not suspended else "Acme Old", "owner_account_sid": sid, "sid": sid,
        "status": "suspended" if suspended else "active", "type": "Full",
        "uri": f"/2010-04-01/Accounts/{sid}.json",
    })


@pytest.fixture
def twilio(app, monkeypatch, httpserver):
    httpserver.expect_request(re.compile(r"/2010-04-01/Accounts/.*"), method="GET").respond_with_handler(twilio_api)
    point_at(app, monkeypatch, "TWILIO_API_BASE", httpserver.url_for("/"))
    return httpserver


def twilio_fields(sid=TWILIO_SID, token=TWILIO_TOKEN):
    return {"from_phone_number": FROM, "account_sid": sid, "auth_token": token}


def test_twilio_good_credentials(api, twilio, run_jobs):
    data, result = run_new_check(api, run_jobs, "sms", "twilio", "sms", twilio_fields())
    assert_passed(data, result)
    assert "Acme Dental" in result["message"] and "active" in result["message"]
    assert TWILIO_TOKEN not in result["message"]


def test_twilio_bad_token(api, twilio, run_jobs):
    data, result = run_new_check(api, run_jobs, "sms", "twilio", "sms", twilio_fields(token="wrong"))
    assert_failed(data, result, "bad credentials", "AuthToken was incorrect", "20003")


def test_twilio_suspended_account(api, twilio, run_jobs):
    data, result = run_new_check(api, run_jobs, "sms", "twilio", "sms", twilio_fields(sid=TWILIO_SUSPENDED_SID))
    assert_failed(data, result, "Acme Old", "suspended")


# --- Vonage -------------------------------------------------------------------------------

VONAGE_KEY, VONAGE_SECRET = "abcd1234", "VonageSecret1"


def vonage_balance(request):
    # Vonage takes the key and secret as query parameters or as Basic auth.
    given = basic_auth(request) or (request.args.get("api_key"), request.args.get("api_secret"))
    if given != (VONAGE_KEY, VONAGE_SECRET):
        return json_response({"error-code": "401", "error-code-label": "authentication failed"}, 401)
    return json_response({"value": 10.17127500, "autoReload": False})


@pytest.fixture
def vonage(app, monkeypatch, httpserver):
    httpserver.expect_request("/account/get-balance", method="GET").respond_with_handler(vonage_balance)
    point_at(app, monkeypatch, "VONAGE_API_BASE", httpserver.url_for("/"))
    return httpserver


def test_vonage_good_credentials(api, vonage, run_jobs):
    data, result = run_new_check(api, run_jobs, "sms", "vonage", "sms",
                             {"from_phone_number": FROM, "api_key": VONAGE_KEY, "api_secret": VONAGE_SECRET})
    assert_passed(data, result)
    assert "10.17 EUR" in result["message"]
    request, _ = vonage.log[-1]
    assert VONAGE_SECRET not in request.url  # the secret travels in the header, not the URL


def test_vonage_bad_secret(api, vonage, run_jobs):
    data, result = run_new_check(api, run_jobs, "sms", "vonage", "sms",
                             {"from_phone_number": FROM, "api_key": VONAGE_KEY, "api_secret": "wrong"})
    assert_failed(data, result, "bad credentials", "authentication failed")


# --- Plivo --------------------------------------------------------------------------------

PLIVO_ID, PLIVO_TOKEN = "MAXXXXXXXXXXXXXXXXXX", "plivo-auth-token"


def plivo_account(request):
    if basic_auth(request) != (PLIVO_ID, PLIVO_TOKEN) or request.path != f"/v1/Account/{PLIVO_ID}/":
        return json_response({"api_id": "c2ad4a3a-1f7c-11ee-9f0b-0242ac110002",
                              "error": "Authentication credentials invalid"}, 401)
    return json_response({
        "account_type": "standard", "address": "", "api_id": "8f4f7f2e-1f7c-11ee-9f0b-0242ac110002",
        "auth_id": PLIVO_ID, "auto_recharge": False, "billing_mode": "prepaid", "cash_credits": "23.82650",
        "city": "", "name": "Acme Dental", "resource_uri": f"/v1/Account/{PLIVO_ID}/", "state": "",
        "timezone": "America/New_York",
    })


@pytest.fixture
def plivo(app, monkeypatch, httpserver):
    httpserver.expect_request(re.compile(r"/v1/Account/.*"), method="GET").respond_with_handler(plivo_account)
    point_at(app, monkeypatch, "PLIVO_API_BASE", httpserver.url_for("/"))
    return httpserver


def test_plivo_good_credentials(api, plivo, run_jobs):
    data, result = run_new_check(api, run_jobs, "sms", "plivo", "sms",
                             {"from_phone_number": FROM, "auth_id": PLIVO_ID, "auth_token": PLIVO_TOKEN})
    assert_passed(data, result)
    assert "Acme Dental" in result["message"] and "23.83" in result["message"]


def test_plivo_bad_token(api, plivo, run_jobs):
    data, result = run_new_check(api, run_jobs, "sms", "plivo", "sms",
                             {"from_phone_number": FROM, "auth_id": PLIVO_ID, "auth_token": "wrong"})
    assert_failed(data, result, "bad credentials", "Authentication credentials invalid")


# --- Amazon SNS (moto on loopback, with IAM authentication switched on) -------------------

@pytest.fixture
def sns_keys(moto_keys):
    return moto_keys("sns:*")


def sns_fields(key_id, secret):
    return {"from_phone_number": FROM, "region": "us-east-1", "access_key_id": key_id, "secret_access_key": secret}


def test_sns_good_credentials(api, sns_keys, run_jobs):
    data, result = run_new_check(api, run_jobs, "sms", "sns", "sms", sns_fields(*sns_keys))
    assert_passed(data, result)
    assert "us-east-1" in result["message"]


def test_sns_unknown_access_key(api, sns_keys, run_jobs):
    data, result = run_new_check(api, run_jobs, "sms", "sns", "sms", sns_fields("AKIAZZZZZZZZZZZZZZZZ", sns_keys[1]))
    assert_failed(data, result, "bad credentials", "InvalidClientTokenId", "security token included in the request is invalid")


def test_sns_wrong_secret(api, sns_keys, run_jobs):
    data, result = run_new_check(api, run_jobs, "sms", "sns", "sms", sns_fields(sns_keys[0], "not-the-secret"))
    assert_failed(data, result, "bad credentials", "SignatureDoesNotMatch")


def test_sns_unreachable_endpoint(api, app, monkeypatch, run_jobs):
    monkeypatch.setitem(app.config, "AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    data, result = run_new_check(api, run_jobs, "sms", "sns", "sms", sns_fields("AKIAIOSFODNN7EXAMPLE", "secret"))
    assert_failed(data, result, "Could not reach 127.0.0.1", "unreachable")


# --- Meta Graph API: WhatsApp Cloud API and Facebook --------------------------------------

PHONE_ID, WABA_ID, OTHER_PHONE_ID = "106540352242922", "102290129340398", "109999999999999"
WA_TOKEN, EXPIRED_TOKEN, BUSY_TOKEN, SEND_ONLY_TOKEN = "EAAGwhatsapp", "EAAGexpired", "EAAGbusy", "EAAGsendonly"
APP_ID, APP_SECRET, OTHER_APP_ID = "1234567890123", "app-secret", "9876543210987"
PAGE_ID, PAGE_TOKEN, USER_TOKEN, FOREIGN_TOKEN = "101112131415161", "EAAGpage", "EAAGuser", "EAAGforeign"


def graph_error(message, code, status=400, subcode=None, kind="OAuthException"):
    error = {"message": message, "type": kind, "code": code, "fbtrace_id": "AbCdEfGhIjK"}
    if subcode:
        error["error_subcode"] = subcode
    return json_response({"error": error}, status)


def graph_api(version):
    """A Graph API on loopback: the few nodes the checks read, with Graph's real error envelope."""
    def handle(request):
        path = request.path.removeprefix(f"/{version}/")
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        token = request.args.get("access_token") or bearer
        if token == EXPIRED_TOKEN:
            return graph_error("Error validating access token: Session has expired on Tuesday, 01-Apr-25 "
                               "10:00:00 PDT. The current time is Wednesday, 02-Apr-25 10:00:00 PDT.", 190, subcode=463)
        if token == BUSY_TOKEN:
            return graph_error("(#4) Application request limit reached", 4, status=403)
        if path == "debug_token":
            if token != f"{APP_ID}|{APP_SECRET}":
                return graph_error("Invalid OAuth access token signature.", 190)
            return json_response({"data": debug_token(request.args["input_token"])})
        if path == APP_ID:
            if token != f"{APP_ID}|{APP_SECRET}":
                return graph_error("Invalid OAuth access token signature.", 190)
            return json_response({"id": APP_ID, "name": "Acme Leads"})
        if token not in (WA_TOKEN, SEND_ONLY_TOKEN):
            return graph_error("Invalid OAuth access token - Cannot parse access token", 190)
        if path in (PHONE_ID, OTHER_PHONE_ID):
            assert request.args["fields"] == "display_phone_number,verified_name,quality_rating"
            return json_response({"display_phone_number": "+1 415-555-2671", "verified_name": "Acme Dental",
                                  "quality_rating": "GREEN", "id": path})
        if path == f"{WABA_ID}/phone_numbers" and token == SEND_ONLY_TOKEN:
            return graph_error("(#200) Requires whatsapp_business_management permission to manage the object", 200,
                               status=403)
        if path == f"{WABA_ID}/phone_numbers":
            return json_response({"data": [{"id": PHONE_ID}], "paging": {"cursors": {"before": "QVFI", "after": "QVFI"}}})
        return graph_error(f"Unsupported get request. Object with ID '{path}' does not exist, cannot be loaded "
                           "due to missing permissions, or does not support this operation.", 100, subcode=33,
                           kind="GraphMethodException")
    return handle


def debug_token(token):
    base = {"app_id": APP_ID, "application": "Acme Leads", "data_access_expires_at": 1767225600,
            "issued_at": 1735689600, "is_valid": True, "user_id": "10158000000000000",
            "scopes": ["pages_show_list", "pages_manage_metadata", "leads_retrieval", "pages_messaging"]}
    if token == PAGE_TOKEN:
        return {**base, "type": "PAGE", "expires_at": 0, "profile_id": PAGE_ID}
    if token == USER_TOKEN:
        return {**base, "type": "USER", "expires_at": 1767225600, "scopes": ["pages_show_list"]}
    if token == FOREIGN_TOKEN:
        return {**base, "app_id": OTHER_APP_ID, "application": "Someone Else", "type": "USER", "expires_at": 0}
    return {"app_id": APP_ID, "type": "USER", "application": "Acme Leads", "expires_at": 1743526800,
            "is_valid": False, "issued_at": 1738342800, "scopes": [], "user_id": "10158000000000000",
            "error": {"code": 190, "message": "Error validating access token: The user has not authorized "
                      "application 1234567890123.", "subcode": 458}}


@pytest.fixture
def graph(app, monkeypatch, httpserver):
    version = app.config["META_API_VERSION"]
    httpserver.expect_request(re.compile(f"/{version}/.*"), method="GET").respond_with_handler(graph_api(version))
    point_at(app, monkeypatch, "META_GRAPH_API_BASE", httpserver.url_for("/"))
    return httpserver


def whatsapp_fields(token=WA_TOKEN, phone_id=PHONE_ID, waba_id=WABA_ID):
    return {"phone_number_id": phone_id, "business_account_id": waba_id, "access_token": token}


def check_whatsapp(api, run_jobs, **kw):
    return run_new_check(api, run_jobs, "whatsapp", "cloud_api", "whatsapp", whatsapp_fields(**kw))


def test_whatsapp_good_token(api, graph, run_jobs):
    data, result = check_whatsapp(api, run_jobs)
    assert_passed(data, result)
    assert "+1 415-555-2671" in result["message"] and "Acme Dental" in result["message"]
    assert all(r.headers["Authorization"] == f"Bearer {WA_TOKEN}" and "access_token" not in r.args for r, _ in graph.log)


def test_whatsapp_token_that_cannot_list_numbers_still_passes(api, graph, run_jobs):
    data, result = check_whatsapp(api, run_jobs, token=SEND_ONLY_TOKEN)
    assert_passed(data, result)
    assert "Acme Dental" in result["message"] and "not confirmed" in result["message"]


def test_whatsapp_expired_token_needs_reconnect(api, graph, run_jobs):
    data, result = check_whatsapp(api, run_jobs, token=EXPIRED_TOKEN)
    assert_failed(data, result, "access token has expired or is invalid: reconnect needed", "Session has expired")


def test_whatsapp_unknown_phone_number_id(api, graph, run_jobs):
    data, result = check_whatsapp(api, run_jobs, phone_id="100000000000001")
    assert_failed(data, result, "does not know this ID", "100000000000001")


def test_whatsapp_number_of_another_business_account(api, graph, run_jobs):
    data, result = check_whatsapp(api, run_jobs, phone_id=OTHER_PHONE_ID)
    assert_failed(data, result, f"{OTHER_PHONE_ID} is not one of the numbers", WABA_ID)


def test_whatsapp_rate_limited(api, graph, run_jobs):
    data, result = check_whatsapp(api, run_jobs, token=BUSY_TOKEN)
    assert_failed(data, result, "rate limiting", "request limit reached")


def facebook_fields(**secrets):
    return {"app_id": APP_ID, "app_secret": APP_SECRET, "page_id": PAGE_ID, **secrets}


def check_facebook(api, run_jobs, **fields):
    return run_new_check(api, run_jobs, "facebook", "graph_api", "facebook", facebook_fields(**fields))


def test_facebook_good_page_token(api, graph, run_jobs):
    data, result = check_facebook(api, run_jobs, page_access_token=PAGE_TOKEN, enable_lead_ads=True)
    assert_passed(data, result)
    assert "page access token is valid" in result["message"] and "never expires" in result["message"]
    assert "leads_retrieval" in result["message"]


def test_facebook_user_token_reports_expiry(api, graph, run_jobs):
    data, result = check_facebook(api, run_jobs, access_token=USER_TOKEN)
    assert_passed(data, result)
    assert "expires on 2026-01-01" in result["message"]


def test_facebook_invalid_token_needs_reconnect(api, graph, run_jobs):
    data, result = check_facebook(api, run_jobs, page_access_token="EAAGrevoked")
    assert_failed(data, result, "no longer valid (the user removed the app): reconnect needed",
                  "has not authorized application")


def test_facebook_token_of_another_app(api, graph, run_jobs):
    data, result = check_facebook(api, run_jobs, access_token=FOREIGN_TOKEN)
    assert_failed(data, result, "another Meta app", OTHER_APP_ID, APP_ID)


def test_facebook_missing_permission_for_lead_ads(api, graph, run_jobs):
    data, result = check_facebook(api, run_jobs, access_token=USER_TOKEN, enable_lead_ads=True)
    assert_failed(data, result, "lacks the permission leads_retrieval")


def test_facebook_wrong_app_secret(api, graph, run_jobs):
    data, result = check_facebook(api, run_jobs, page_access_token=PAGE_TOKEN, app_secret="wrong")
    assert_failed(data, result, "refused the app ID and app secret", "Invalid OAuth access token signature")


def test_facebook_without_token_checks_the_app(api, graph, run_jobs):
    data, result = check_facebook(api, run_jobs)
    assert_passed(data, result)
    assert "Acme Leads" in result["message"] and "no page or user access token is connected yet" in result["message"]
    data, result = check_facebook(api, run_jobs, app_secret="wrong")
    assert_failed(data, result, "refused the app ID and app secret")
