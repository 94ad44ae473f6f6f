"""Connection tests of the Mailgun, Mandrill, Amazon SES and SMTP adapters, each through the real API and a
real RQ worker, against real servers on loopback: HTTP servers speaking each provider's wire format, moto for
SES (with IAM authentication switched on), and aiosmtpd with trustme certificates for SMTP."""
import base64
import json
import re
import socket
import ssl
import uuid

import pytest
import trustme
from werkzeug import Response

from tests.conftest import point_at
from tests.providers.checks import assert_failed, assert_passed, create_configured, run_check
from tests.providers.smtp_server import free_port, start_server


def make_integration(api, provider, **values):
    return create_configured(api, "email", provider, "email", {"from_email": "hi@example.com", **values})


# --- Mailgun ------------------------------------------------------------------------------------------------

MAILGUN_KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
MAILGUN_DOMAINS = {  # one account: a verified domain in the US region, a new one in the EU region
    ("us", "mg.example.com"): {"name": "mg.example.com", "state": "active", "type": "custom"},
    ("eu", "mg.example.eu"): {"name": "mg.example.eu", "state": "unverified", "type": "custom"},
}


def mailgun_domain(request):
    expected = "Basic " + base64.b64encode(f"api:{MAILGUN_KEY}".encode()).decode()
    if request.headers.get("Authorization") != expected:
        return Response("Forbidden", status=401, content_type="text/plain")
    region, domain = re.match(r"^/(us|eu)/v3/domains/([^/]+)$", request.path).groups()
    info = MAILGUN_DOMAINS.get((region, domain))
    if info is None:
        return Response(json.dumps({"message": "Domain not found"}), status=404, content_type="application/json")
    return Response(json.dumps({"domain": {**info, "created_at": "Tue, 12 Aug 2025 21:17:13 GMT",
                                           "spam_action": "disabled", "wildcard": False},
                                "receiving_dns_records": [], "sending_dns_records": []}),
                    content_type="application/json")


@pytest.fixture
def mailgun(app, monkeypatch, httpserver):
    """One loopback server plays both regions: /us for api.mailgun.net, /eu for api.eu.mailgun.net."""
    httpserver.expect_request(re.compile(r"^/(us|eu)/v3/domains/"), method="GET").respond_with_handler(mailgun_domain)
    point_at(app, monkeypatch, "MAILGUN_API_BASE", httpserver.url_for("/us"))
    point_at(app, monkeypatch, "MAILGUN_EU_API_BASE", httpserver.url_for("/eu"))
    return httpserver


def test_mailgun_domain_found_in_us_and_eu(api, mailgun, run_jobs):
    us = make_integration(api, "mailgun", domain="mg.example.com", region="us", api_key=MAILGUN_KEY)
    data, result = run_check(api, run_jobs, us)
    assert_passed(data, result)
    assert "mg.example.com is in this account in the US region and verified" in result["message"]

    eu = make_integration(api, "mailgun", domain="mg.example.eu", region="eu", api_key=MAILGUN_KEY)
    data, result = run_check(api, run_jobs, eu)
    assert_passed(data, result)
    assert "EU region" in result["message"] and "not verified yet" in result["message"]
    assert [r.path for r, _ in mailgun.log] == ["/us/v3/domains/mg.example.com", "/eu/v3/domains/mg.example.eu"]


def test_mailgun_bad_key(api, mailgun, run_jobs):
    integration_id = make_integration(api, "mailgun", domain="mg.example.com", region="us", api_key="key-wrong")
    assert_failed(*run_check(api, run_jobs, integration_id), "bad credentials", "Forbidden")


@pytest.mark.parametrize("domain, region", [("mg.unknown.com", "us"), ("mg.example.eu", "us")])
def test_mailgun_domain_not_in_account_or_other_region(api, mailgun, run_jobs, domain, region):
    integration_id = make_integration(api, "mailgun", domain=domain, region=region, api_key=MAILGUN_KEY)
    assert_failed(*run_check(api, run_jobs, integration_id),
                  f"The domain {domain} is not in this Mailgun account in the US region",
                  "check the domain name and the region")


# --- Mailchimp Transactional (Mandrill) ---------------------------------------------------------------------

MANDRILL_KEY = "md-good-key"


def mandrill_error(name, message, code=-1):
    return Response(json.dumps({"status": "error", "code": code, "name": name, "message": message}),
                    status=500, content_type="application/json")


def mandrill_ping(request):
    key = (request.get_json(silent=True) or {}).get("key")
    if key == "md-broken":
        return mandrill_error("GeneralError", "An unexpected error occurred processing the request.")
    if key != MANDRILL_KEY:
        return mandrill_error("Invalid_Key", "Invalid API key")
    return Response(json.dumps("PONG!"), content_type="application/json")


@pytest.fixture
def mandrill(app, monkeypatch, httpserver):
    httpserver.expect_request("/api/1.0/users/ping", method="POST").respond_with_handler(mandrill_ping)
    point_at(app, monkeypatch, "MANDRILL_API_BASE", httpserver.url_for("/api/1.0"))
    return httpserver


def test_mandrill_good_key(api, mandrill, run_jobs):
    integration_id = make_integration(api, "mailchimp", api_key=MANDRILL_KEY)
    data, result = run_check(api, run_jobs, integration_id)
    assert_passed(data, result)
    assert "API key accepted" in result["message"]


def test_mandrill_bad_key_is_bad_credentials_not_a_server_error(api, mandrill, run_jobs):
    integration_id = make_integration(api, "mailchimp", api_key="md-wrong")
    error = assert_failed(*run_check(api, run_jobs, integration_id), "bad credentials", "Invalid API key")
    assert "server error" not in error and "500" not in error


def test_mandrill_other_errors_say_so(api, mandrill, run_jobs):
    integration_id = make_integration(api, "mailchimp", api_key="md-broken")
    assert_failed(*run_check(api, run_jobs, integration_id), "temporary problem (GeneralError)", "unexpected error")


# --- Amazon SES ---------------------------------------------------------------------------------------------

@pytest.fixture
def ses_keys(moto_keys):
    return moto_keys("ses:*")


def make_ses(api, key_id, secret, region="us-east-1"):
    return make_integration(api, "ses", region=region, access_key_id=key_id, secret_access_key=secret)


def test_ses_good_keys_against_moto(api, ses_keys, run_jobs):
    data, result = run_check(api, run_jobs, make_ses(api, *ses_keys))
    assert_passed(data, result)
    assert "Credentials accepted by Amazon SES in us-east-1" in result["message"]
    assert "messages per 24 hours" in result["message"]


@pytest.mark.parametrize("which", ["wrong secret", "unknown key id"])
def test_ses_bad_keys_against_moto(api, ses_keys, run_jobs, which):
    key_id, secret = ses_keys
    if which == "wrong secret":
        secret = "not-the-secret"
    else:
        key_id = "AKIAZZZZZZZZZZZZZZZZ"
    data, result = run_check(api, run_jobs, make_ses(api, key_id, secret))
    error = assert_failed(data, result, "Amazon SES refused the credentials (bad credentials)")
    assert ("signature we calculated does not match" if which == "wrong secret" else "security token") in error
    assert secret not in error


SES_ACCOUNT = {
    "DedicatedIpAutoWarmupEnabled": False, "EnforcementStatus": "HEALTHY", "ProductionAccessEnabled": False,
    "SendQuota": {"Max24HourSend": 200.0, "MaxSendRate": 1.0, "SentLast24Hours": 3.0},
    "SendingEnabled": True,
}


@pytest.fixture
def ses_api(app, monkeypatch, httpserver):
    """SES's own v2 JSON API on loopback (GetAccount), answering as AWS does for a known and an unknown key."""
    accounts = {"AKIAGOODKEY000000000": SES_ACCOUNT, "AKIAPAUSED0000000000": {**SES_ACCOUNT, "SendingEnabled": False}}

    def get_account(request):
        match = re.search(r"Credential=([A-Z0-9]+)/\d{8}/([a-z0-9-]+)/ses/aws4_request",
                          request.headers.get("Authorization", ""))
        if not match or match.group(1) not in accounts:
            return Response(json.dumps({"message": "The security token included in the request is invalid."}),
                            status=403, content_type="application/json",
                            headers={"x-amzn-ErrorType": "UnrecognizedClientException:",
                                     "x-amzn-RequestId": str(uuid.uuid4())})
        return Response(json.dumps(accounts[match.group(1)]), content_type="application/json",
                        headers={"x-amzn-RequestId": str(uuid.uuid4())})

    httpserver.expect_request("/v2/email/account", method="GET").respond_with_handler(get_account)
    monkeypatch.setitem(app.config, "AWS_ENDPOINT_URL", httpserver.url_for("/").rstrip("/"))
    return httpserver


def test_ses_get_account_reports_sandbox_and_quota(api, ses_api, run_jobs):
    data, result = run_check(api, run_jobs, make_ses(api, "AKIAGOODKEY000000000", "secret", region="eu-west-1"))
    assert_passed(data, result)
    assert result["message"] == ("Credentials accepted by Amazon SES in eu-west-1; sending is enabled; the account is "
                                 "in the SES sandbox, so mail goes only to verified addresses; up to 200 messages per "
                                 "24 hours at 1 per second (3 sent in the last 24 hours).")
    assert "/eu-west-1/ses/aws4_request" in ses_api.log[0][0].headers["Authorization"]


def test_ses_get_account_bad_key_and_paused_account(api, ses_api, run_jobs):
    data, result = run_check(api, run_jobs, make_ses(api, "AKIAUNKNOWN000000000", "secret"))
    assert_failed(data, result, "bad credentials", "The security token included in the request is invalid.")

    data, result = run_check(api, run_jobs, make_ses(api, "AKIAPAUSED0000000000", "secret"))
    assert_failed(data, result, "sending is paused")


def test_ses_unreachable_endpoint(api, app, monkeypatch, run_jobs):
    monkeypatch.setitem(app.config, "AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    assert_failed(*run_check(api, run_jobs, make_ses(api, "AKIAGOODKEY000000000", "secret")), "unreachable")


# --- SMTP ---------------------------------------------------------------------------------------------------

SMTP_USER, SMTP_PASSWORD = "mailer", "s3cret-pass"


@pytest.fixture(scope="session")
def smtp_ca():
    return trustme.CA()


@pytest.fixture
def trusted_tls(smtp_ca, tmp_path, monkeypatch):
    """A server context with a certificate for 127.0.0.1, signed by a CA that the client trusts through
    SSL_CERT_FILE (which ssl.create_default_context() reads)."""
    ca_file = tmp_path / "ca.pem"
    smtp_ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    assert ssl.create_default_context().get_ca_certs()[0]["serialNumber"]  # the client now trusts only this CA
    return server_context(smtp_ca)


def server_context(ca):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "mail.test").configure_cert(context)
    return context


@pytest.fixture
def allow_private(app, monkeypatch):
    monkeypatch.setitem(app.config, "ALLOW_PRIVATE_NETWORK", True)


@pytest.fixture
def smtp_servers():
    started = []

    def start(**kwargs):
        server = start_server(**kwargs)
        started.append(server)
        return server
    yield start
    for server in started:
        server.stop()


def make_smtp(api, port, security="starttls", username=SMTP_USER, password=SMTP_PASSWORD):
    return make_integration(api, "smtp", host="127.0.0.1", port=port, security=security,
                            username=username, password=password)


def test_smtp_starttls_and_sign_in_without_sending(api, allow_private, trusted_tls, smtp_servers, run_jobs):
    server = smtp_servers(starttls_context=trusted_tls, username=SMTP_USER, password=SMTP_PASSWORD)
    data, result = run_check(api, run_jobs, make_smtp(api, server.port))
    assert_passed(data, result)
    expected = rf"Connected to 127\.0\.0\.1:{server.port} with STARTTLS \(TLSv1\.[23]\) and signed in as mailer\."
    assert re.fullmatch(expected, result["message"]), result["message"]
    assert server.commands == ["EHLO", "STARTTLS", "EHLO", "AUTH", "QUIT"]  # no MAIL FROM, no RCPT, no DATA


def test_smtp_implicit_tls(api, allow_private, trusted_tls, smtp_servers, run_jobs):
    server = smtp_servers(implicit_context=trusted_tls, username=SMTP_USER, password=SMTP_PASSWORD)
    data, result = run_check(api, run_jobs, make_smtp(api, server.port, security="ssl"))
    assert_passed(data, result)
    assert "with implicit TLS (TLSv1." in result["message"] and "signed in as mailer" in result["message"]
    assert server.commands == ["EHLO", "AUTH", "QUIT"]


def test_smtp_wrong_password(api, allow_private, trusted_tls, smtp_servers, run_jobs):
    server = smtp_servers(starttls_context=trusted_tls, username=SMTP_USER, password=SMTP_PASSWORD)
    data, result = run_check(api, run_jobs, make_smtp(api, server.port, password="wrong"))
    error = assert_failed(data, result, "bad credentials", "535")
    assert "wrong" not in error
    assert "MAIL" not in server.commands


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_smtp_untrusted_certificate(api, allow_private, trusted_tls, smtp_servers, run_jobs, security):
    stranger = server_context(trustme.CA())  # signed by a CA the client has never heard of
    kwargs = {"starttls_context" if security == "starttls" else "implicit_context": stranger}
    server = smtp_servers(username=SMTP_USER, password=SMTP_PASSWORD, **kwargs)
    data, result = run_check(api, run_jobs, make_smtp(api, server.port, security=security))
    assert_failed(data, result, "TLS failure", "certificate could not be verified",
                  "not signed by an authority we trust")
    assert "AUTH" not in server.commands


def test_smtp_server_without_starttls(api, allow_private, smtp_servers, run_jobs):
    server = smtp_servers(username=SMTP_USER, password=SMTP_PASSWORD)  # plain text only
    data, result = run_check(api, run_jobs, make_smtp(api, server.port))
    assert_failed(data, result, "does not offer STARTTLS")
    assert "AUTH" not in server.commands  # the password never crossed the wire in clear

    plain = make_smtp(api, server.port, security="none")
    data, result = run_check(api, run_jobs, plain)
    assert_passed(data, result)
    assert result["message"] == f"Connected to 127.0.0.1:{server.port} without encryption and signed in as mailer."


def test_smtp_implicit_tls_against_a_starttls_port(api, allow_private, trusted_tls, smtp_servers, run_jobs):
    server = smtp_servers(starttls_context=trusted_tls)
    data, result = run_check(api, run_jobs, make_smtp(api, server.port, security="ssl", username=None, password=None))
    assert_failed(data, result, "TLS failure", "try STARTTLS")


def test_smtp_loopback_refused_unless_allowed(api, app, monkeypatch, trusted_tls, smtp_servers, run_jobs):
    server = smtp_servers(starttls_context=trusted_tls, username=SMTP_USER, password=SMTP_PASSWORD)
    created = api.post("/api/integrations/",
                       json={"integration_type": "email", "name": "Relay", "provider": "smtp"}).json
    r = api.post(f"/api/integrations/{created['id']}/configure/email/",
                 json={"from_email": "hi@example.com", "host": "127.0.0.1", "port": server.port})
    assert r.status_code == 400 and "loopback" in r.json["errors"]["host"][0]

    # Saved while a local relay was allowed; the setting was turned off since.
    monkeypatch.setitem(app.config, "ALLOW_PRIVATE_NETWORK", True)
    integration_id = make_smtp(api, server.port)
    monkeypatch.setitem(app.config, "ALLOW_PRIVATE_NETWORK", False)
    assert_failed(*run_check(api, run_jobs, integration_id),
                  "Refused to connect to 127.0.0.1", "loopback addresses are not allowed")
    assert server.commands == []


def test_smtp_unreachable_and_timeout(api, app, monkeypatch, allow_private, run_jobs):
    integration_id = make_smtp(api, free_port())  # nothing listens there
    assert_failed(*run_check(api, run_jobs, integration_id), "connection was refused (unreachable host)")

    with socket.socket() as silent:  # accepts connections (the kernel does) but never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        monkeypatch.setitem(app.config, "PROVIDER_TIMEOUT_SECONDS", 0.3)
        integration_id = make_smtp(api, silent.getsockname()[1])
        data, result = run_check(api, run_jobs, integration_id)
    assert_failed(data, result, "did not answer within 0.3 seconds (timeout)")
