"""The Lead Ads panel of a Facebook integration: lead forms from the Graph fake, choosing one, the
field mapping, the import of recent leads (a real RQ job paging through Graph) with its progress,
the recent leads; and another organisation's integration answering 404 on every route."""
import json
import time

import pytest
from markupsafe import escape
from redis import Redis

from app.extensions import db
from app.models import Contact, Integration, Lead
from app.services import leads as leads_svc
from tests.conftest import Browser
from tests.graph_fake import EXPIRED_TOKEN, FORM_ID, OTHER_FORM_ID, PAGE_ID, PAGE_TOKEN
from tests.test_lead_ads import (LEAD_ID, all_leads, configure, count, graph, graph_requests,  # noqa: F401 (fixture)
                                 leadgen, post_webhook, set_token)

HTMX = {"HX-Request": "true"}


def url(integration, part=""):
    return f"/integrations/{integration['id']}/lead-ads{part}"


def text(response) -> str:
    return response.get_data(as_text=True)


def config_of(integration) -> dict:
    db.session.expire_all()
    return db.session.get(Integration, integration["id"]).config


# --- the panel ------------------------------------------------------------------------------------

def test_the_overview_loads_the_panel_without_waiting_on_meta(api, browser, graph, httpserver):
    fb = configure(api)
    page = text(browser.get(f"/integrations/{fb['id']}"))
    assert f'hx-get="{url(fb)}"' in page and 'id="lead-ads"' in page
    assert graph_requests(httpserver) == []
    email = api.post("/api/integrations/", json={"integration_type": "email", "name": "Mail", "provider": "smtp"}).json
    assert "lead-ads" not in text(browser.get(f"/integrations/{email['id']}"))


def test_the_panel_says_what_to_do_before_any_lead(api, browser, graph, httpserver):
    fb = configure(api, enable_lead_ads=False)
    panel = browser.get(url(fb), headers=HTMX)
    assert panel.status_code == 200 and "<html" not in text(panel)
    body = text(panel)
    assert 'id="leads-empty"' in body and "Lead Ads Testing Tool" in body
    assert 'id="lead-ads-off"' in body and "Switch on “Receive Lead Ads leads”" in body
    assert f"Form {FORM_ID}" in body and "Facebook lead" in body and "Welcome" in body
    assert f'hx-get="{url(fb, "/forms")}"' in body and f'hx-get="{url(fb, "/mapping")}"' in body
    assert graph_requests(httpserver) == []  # Meta is asked by the fragments, not by the panel
    page = browser.get(url(fb))  # without HTMX: a page of its own
    assert page.status_code == 200 and "<html" in text(page) and 'id="lead-ads"' in text(page)


def test_the_panel_lists_recent_leads_with_their_contact_and_error(app, api, browser, graph, run_jobs):
    graph.add_lead("900000000000003", full_name="Nobody")
    fb = configure(api)
    post_webhook(app, fb, leadgen(LEAD_ID))
    post_webhook(app, fb, leadgen("900000000000003"))
    run_jobs()
    body = text(browser.get(url(fb, "/leads"), headers=HTMX))
    contact_id = all_leads()[0].contact_id
    assert f'href="/contacts/{contact_id}">Jane Doe</a>' in body
    assert 'data-status="processed"' in body and 'data-status="failed"' in body
    assert "neither an email address nor a phone number" in body
    assert "1 processed · 0 pending · 1 failed" in body


# --- lead forms -----------------------------------------------------------------------------------

def test_the_pages_lead_forms_are_listed_to_choose_from(api, browser, graph, httpserver):
    fb = configure(api)
    forms = browser.get(url(fb, "/forms"), headers=HTMX)
    body = text(forms)
    assert forms.status_code == 200 and "Spring offer" in body and "Newsletter" in body and "archived" in body
    assert f'data-form-id="{FORM_ID}"' in body and "Chosen" in body
    assert graph_requests(httpserver)[0] == (f"/v25.0/{PAGE_ID}/leadgen_forms", {
        "access_token": PAGE_TOKEN, "fields": "id,name,status", "limit": "100"})

    chosen = browser.post(url(fb, "/form"), {"form_id": OTHER_FORM_ID}, headers=HTMX)
    assert chosen.status_code == 200 and chosen.headers["HX-Trigger"] == "lead-form-chosen"
    assert f"Leads now come from form {OTHER_FORM_ID}." in text(chosen)
    assert config_of(fb)["lead_form_id"] == OTHER_FORM_ID
    every = browser.post(url(fb, "/form"), {"form_id": ""})
    assert every.status_code == 302 and config_of(fb)["lead_form_id"] is None
    bad = browser.post(url(fb, "/form"), {"form_id": "not-a-form"}, headers=HTMX)
    assert bad.status_code == 200 and "The lead form ID is a number." in text(bad)
    bad_page = browser.post(url(fb, "/form"), {"form_id": "1" * 30})
    assert bad_page.status_code == 400 and "The lead form ID is a number." in text(bad_page) and "<html" in text(bad_page)
    assert config_of(fb)["lead_form_id"] is None
    logs = api.get(f"/api/integrations/{fb['id']}/logs/").json["items"]
    assert any("changed lead_form_id" in entry["message"] for entry in logs)


def test_graph_errors_on_the_forms_are_plain_words(api, browser, graph):
    fb = configure(api, page_access_token=EXPIRED_TOKEN)
    body = text(browser.get(url(fb, "/forms"), headers=HTMX))
    assert 'id="lead-forms-error"' in body and "reconnect needed" in body and "Traceback" not in body
    no_page = configure(api, page_id="", lead_form_id="")
    body = text(browser.get(url(no_page, "/forms"), headers=HTMX))
    assert "Set the Page ID of the integration first" in body


# --- the field mapping ----------------------------------------------------------------------------

def test_the_mapping_editor_shows_the_forms_questions_and_saves_choices(app, api, browser, graph, httpserver, run_jobs):
    fb = configure(api)
    editor = text(browser.get(url(fb, "/mapping"), headers=HTMX))
    assert (f"/v25.0/{FORM_ID}", {"access_token": PAGE_TOKEN, "fields": "id,name,questions"}) in graph_requests(httpserver)
    assert 'id="mapping-table"' in editor and "What is your budget?" in editor
    assert 'data-key="company_name"' in editor and 'value="company"' in editor  # mapped to fields.company
    rows = {"key-0": "email", "target-0": "email", "field-0": "",
            "key-1": "full_name", "target-1": "name", "field-1": "",
            "key-2": "phone_number", "target-2": "skip", "field-2": "",
            "key-3": "company_name", "target-3": "fields", "field-3": "company",
            "key-4": "budget", "target-4": "fields", "field-4": "Budget range"}
    saved = browser.post(url(fb, "/mapping"), rows, headers=HTMX)
    assert saved.status_code == 200 and 'id="mapping-saved"' in text(saved)
    assert config_of(fb)["lead_field_mapping"] == {"company_name": "fields.company", "phone_number": "skip",
                                                   "budget": "fields.Budget range"}
    post_webhook(app, fb, leadgen(LEAD_ID))
    run_jobs()
    contact = api.get(f"/api/contacts/{all_leads()[0].contact_id}/").json
    assert contact["phone"] is None and contact["fields"] == {"company": "Acme Dental", "Budget range": "5000"}

    wrong = browser.post(url(fb, "/mapping"), {**rows, "target-4": "password"}, headers=HTMX)
    assert wrong.status_code == 200 and "Choose where the answer to “budget” goes." in text(wrong)
    too_long = browser.post(url(fb, "/mapping"), {**rows, "field-4": "x" * 101})  # without HTMX: the page, errors in place
    assert too_long.status_code == 400 and "<html" in text(too_long)
    assert "a custom field name is at most 100 characters" in text(too_long)
    assert config_of(fb)["lead_field_mapping"]["budget"] == "fields.Budget range"


def test_without_a_chosen_form_the_mapping_is_written_as_json(api, browser, graph, httpserver):
    fb = configure(api, lead_form_id="")
    editor = text(browser.get(url(fb, "/mapping"), headers=HTMX))
    assert 'id="mapping-choose-form"' in editor and 'name="mapping_json"' in editor and "fields.company" in editor
    assert graph_requests(httpserver) == []
    for given, words in [('{"budget": ', "not valid JSON"), ('["budget"]', "Give an object"),
                         ('{"budget": "fields."}', "goes nowhere known"), ('{"budget": 5}', "goes nowhere known")]:
        response = browser.post(url(fb, "/mapping"), {"mapping_json": given}, headers=HTMX)
        assert response.status_code == 200 and words in text(response), given
        assert 'aria-invalid="true"' in text(response) and str(escape(given)) in text(response)  # kept to correct
    assert browser.post(url(fb, "/mapping"), {"mapping_json": "{"}).status_code == 400
    assert config_of(fb)["lead_field_mapping"] == {"company_name": "fields.company"}
    saved = browser.post(url(fb, "/mapping"), {"mapping_json": '{"budget": "skip"}'}, headers=HTMX)
    assert 'id="mapping-saved"' in text(saved) and config_of(fb)["lead_field_mapping"] == {"budget": "skip"}


def test_a_graph_error_on_the_questions_falls_back_to_json(api, browser, graph):
    fb = configure(api, page_access_token=EXPIRED_TOKEN)
    editor = text(browser.get(url(fb, "/mapping"), headers=HTMX))
    assert 'id="mapping-meta-error"' in editor and "reconnect needed" in editor and 'name="mapping_json"' in editor


# --- importing recent leads -----------------------------------------------------------------------

def add_leads(graph, n, form_id=FORM_ID, first=10):
    ids = [f"9000000000000{first + i}" for i in range(n)]
    for i, leadgen_id in enumerate(ids):
        graph.add_lead(leadgen_id, form_id=form_id, email=f"lead{first + i}@example.com", full_name=f"Lead {first + i}")
    return ids


def test_import_pages_through_the_form_with_progress_and_no_duplicates(app, api, browser, graph, httpserver, run_jobs):
    add_leads(graph, 4)  # with the fixture's lead: five in the form, three pages of Graph's
    fb = configure(api)
    post_webhook(app, fb, leadgen(LEAD_ID))
    run_jobs()  # the first lead came by webhook
    started = browser.post(url(fb, "/import"), headers=HTMX)
    body = text(started)
    assert started.status_code == 200 and 'data-status="queued"' in body and "waiting for a worker" in body
    assert f'hx-get="{url(fb, "/import")}?polling=1"' in body and 'hx-trigger="every 1s"' in body
    assert browser.get(url(fb, "/import") + "?polling=1", headers=HTMX).headers.get("HX-Trigger") is None

    run_jobs()
    done = browser.get(url(fb, "/import") + "?polling=1", headers=HTMX)
    assert done.headers["HX-Trigger"] == "leads-imported"  # the list of leads refreshes
    assert 'data-status="finished"' in text(done) and "hx-trigger" not in text(done).split('id="import-progress"')[0]
    assert "5 read from Meta, 4 new, 4 processed, 1 already here, 0 failed" in text(done)
    pages = [query for path, query in graph_requests(httpserver) if path == f"/v25.0/{FORM_ID}/leads"]
    assert pages == [{"access_token": PAGE_TOKEN, "fields": "id,created_time,field_data", "limit": "100"},
                     {"access_token": PAGE_TOKEN, "fields": "id,created_time,field_data", "limit": "100",
                      "after": "cursor-2"},
                     {"access_token": PAGE_TOKEN, "fields": "id,created_time,field_data", "limit": "100",
                      "after": "cursor-4"}]
    leads = all_leads()
    assert len(leads) == 5 and all(lead.status == "processed" for lead in leads) and count(Contact) == 5
    assert [lead.source for lead in leads] == ["webhook"] + ["import"] * 4
    assert sum(path.endswith(f"/{LEAD_ID}") for path, _ in graph_requests(httpserver)) == 1  # answers came with the pages
    contact = api.get(f"/api/contacts/{leads[1].contact_id}/").json
    assert contact["tags"] == ["Facebook lead"]
    assert any(e["description"] == f"Lead from Facebook Lead Ads form {FORM_ID} (imported)." for e in contact["timeline"])
    logs = [entry["message"] for entry in api.get(f"/api/integrations/{fb['id']}/logs/").json["items"]]
    assert any("started an import of recent leads" in m for m in logs)
    assert any(m.startswith("Import of recent leads finished: 5 leads read from Meta") for m in logs)

    # Again: nothing new, nothing made twice.
    browser.post(url(fb, "/import"), headers=HTMX)
    run_jobs()
    assert "5 read from Meta, 0 new, 0 processed, 5 already here" in text(browser.get(url(fb, "/import")))
    assert count(Lead) == 5 and count(Contact) == 5


def test_import_without_a_chosen_form_takes_every_form(api, browser, graph, httpserver, run_jobs):
    add_leads(graph, 1, form_id=OTHER_FORM_ID)
    fb = configure(api, lead_form_id="")
    browser.post(url(fb, "/import"))
    run_jobs()
    paths = [path for path, _ in graph_requests(httpserver)]
    assert paths == [f"/v25.0/{PAGE_ID}/leadgen_forms", f"/v25.0/{FORM_ID}/leads", f"/v25.0/{OTHER_FORM_ID}/leads"]
    assert sorted(lead.form_id for lead in all_leads()) == [FORM_ID, OTHER_FORM_ID]


def test_an_expired_token_stops_the_import_and_a_new_one_brings_the_failed_lead_in(app, api, browser, graph, run_jobs):
    fb = configure(api, page_access_token=EXPIRED_TOKEN)
    post_webhook(app, fb, leadgen(LEAD_ID))
    run_jobs()
    assert all_leads()[0].status == "failed"
    browser.post(url(fb, "/import"), headers=HTMX)
    run_jobs()
    failed = text(browser.get(url(fb, "/import"), headers=HTMX))
    assert 'data-status="failed"' in failed and "reconnect needed" in failed and 'id="import-leads"' in failed
    assert api.get(f"/api/integrations/{fb['id']}/").json["status"] == "error"
    set_token(api, fb, PAGE_TOKEN)
    browser.post(url(fb, "/import"), headers=HTMX)
    run_jobs()
    assert "1 read from Meta, 0 new, 1 processed, 0 already here, 0 failed" in \
        text(browser.get(url(fb, "/import"), headers=HTMX))
    [lead] = all_leads()
    assert lead.status == "processed" and lead.contact_id is not None and lead.error is None


def test_a_rate_limit_stops_the_import_and_keeps_what_came(api, browser, graph, run_jobs):
    add_leads(graph, 4)
    graph.rate_limit_after = 2  # two pages, then Meta says to slow down
    fb = configure(api)
    browser.post(url(fb, "/import"), headers=HTMX)
    run_jobs()
    body = text(browser.get(url(fb, "/import"), headers=HTMX))
    assert 'data-status="failed"' in body and "rate limiting" in body and "run the import again later" in body
    assert "So far: 4 read from Meta, 4 new, 4 processed" in body
    assert count(Lead) == 4 and api.get(f"/api/integrations/{fb['id']}/").json["status"] != "error"
    graph.rate_limit_after = None
    browser.post(url(fb, "/import"), headers=HTMX)
    run_jobs()
    assert "5 read from Meta, 1 new, 1 processed, 4 already here" in text(browser.get(url(fb, "/import")))


def test_import_refuses_to_start_with_a_reason(api, browser, graph, run_jobs, redis_conn):
    fb = configure(api, enable_lead_ads=False)
    response = browser.post(url(fb, "/import"), headers=HTMX)
    assert 'id="import-problem"' in text(response) and "Switch on “Receive Lead Ads leads”" in text(response)
    assert redis_conn.get(leads_svc.IMPORT_PROGRESS_KEY.format(fb["id"])) is None
    redirected = browser.post(url(fb, "/import"))
    assert redirected.status_code == 302


def test_without_redis_the_import_says_so_and_the_panel_still_shows(app, api, browser, graph, monkeypatch):
    fb = configure(api)
    monkeypatch.setitem(app.extensions, "redis", Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=1))
    response = browser.post(url(fb, "/import"), headers=HTMX)
    assert response.status_code == 200 and "The job queue (Redis) is not reachable" in text(response)
    panel = browser.get(url(fb), headers=HTMX)
    assert panel.status_code == 200 and "the import&#39;s progress cannot be read right now" in text(panel)


def test_one_import_at_a_time(api, browser, graph, run_jobs, redis_conn):
    fb = configure(api)
    first = browser.post(url(fb, "/import"), headers=HTMX)
    second = browser.post(url(fb, "/import"), headers=HTMX)
    assert 'data-status="queued"' in text(first) and 'data-status="queued"' in text(second)
    assert 'id="import-leads"' not in text(second)  # no second button while one runs
    from app.queue import task_queue
    assert len([job for job in task_queue().jobs if job.func_name.endswith("import_recent_leads")]) == 1
    run_jobs()
    assert json.loads(redis_conn.get(leads_svc.IMPORT_PROGRESS_KEY.format(fb["id"])))["status"] == "finished"
    assert redis_conn.get(leads_svc.IMPORT_LOCK_KEY.format(fb["id"])) is None


def test_an_import_no_worker_took_is_reported_as_stopped(api, browser, graph, redis_conn):
    fb = configure(api)
    browser.post(url(fb, "/import"), headers=HTMX)
    key = leads_svc.IMPORT_PROGRESS_KEY.format(fb["id"])
    progress = json.loads(redis_conn.get(key))
    progress["updated_at"] = time.time() - leads_svc.IMPORT_STALE_SECONDS - 1
    redis_conn.set(key, json.dumps(progress))
    body = text(browser.get(url(fb, "/import"), headers=HTMX))
    assert 'data-status="stopped"' in body and "stopped without finishing" in body and 'id="import-leads"' in body


# --- every new route: another organisation's integration, other types, signed out ----------------------

ROUTES = [("get", ""), ("get", "/forms"), ("get", "/mapping"), ("get", "/import"), ("get", "/leads"),
          ("post", "/form"), ("post", "/mapping"), ("post", "/import")]


@pytest.mark.parametrize("method,part", ROUTES)
def test_another_organisations_integration_is_404_on_every_route(app, api, browser, other_admin, graph, httpserver,
                                                                  method, part):
    fb = configure(api)
    before = config_of(fb)
    other = Browser(app.test_client()).login(other_admin.email)
    data = {"form_id": OTHER_FORM_ID, "mapping_json": '{"budget": "skip"}'}
    response = other.get(url(fb, part), headers=HTMX) if method == "get" else other.post(url(fb, part), data,
                                                                                         headers=HTMX)
    assert response.status_code == 404
    email = api.post("/api/integrations/", json={"integration_type": "email", "name": "Mail", "provider": "smtp"}).json
    ours = browser.get(url(email, part)) if method == "get" else browser.post(url(email, part), data)
    assert ours.status_code == 404  # only Facebook integrations have Lead Ads
    missing = browser.get(f"/integrations/{2**31 - 1}/lead-ads{part}") if method == "get" else \
        browser.post(f"/integrations/{2**31 - 1}/lead-ads{part}", data)
    assert missing.status_code == 404
    signed_out = getattr(app.test_client(), method)(url(fb, part))
    if method == "get":
        assert signed_out.status_code == 302 and signed_out.headers["Location"].startswith("/login")
    else:
        assert signed_out.status_code == 400  # no session, no CSRF token
    assert config_of(fb) == before and graph_requests(httpserver) == [] and count(Lead) == 0


@pytest.mark.parametrize("part", ["/form", "/mapping", "/import"])
def test_posts_without_a_csrf_token_change_nothing(app, api, browser, graph, part):
    fb = configure(api)
    before = config_of(fb)
    response = browser.client.post(url(fb, part), data={"form_id": OTHER_FORM_ID, "mapping_json": "{}"})
    assert response.status_code == 400 and config_of(fb) == before
