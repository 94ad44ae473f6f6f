"""The Facebook adapter's Lead Ads parts on their own: Meta's signature vector, what a Page
notification says, its de-duplication key, Graph's forms of a time, the field mapping's rules."""
import json

import pytest

from app.providers.base import InboundWebhook, LeadEvent, ProviderSettings, WebhookRejected
from app.providers.facebook.graph_api import FacebookGraphAPI, answer_targets, fetched_lead, mapping_problem
from app.providers.meta import verify_signature
from tests.providers.test_send_whatsapp import V1_BODY, V1_SECRET, V1_SIGNATURE  # vector V1 of vectors.json


def request(body: bytes, **headers) -> InboundWebhook:
    return InboundWebhook(method="POST", url="https://x/", headers={k.lower(): v for k, v in headers.items()},
                          body=body)


def page_body(*changes, messaging=None) -> bytes:
    entry = {"id": "101112131415161", "time": 1767605401, "changes": list(changes)}
    if messaging:
        entry["messaging"] = messaging
    return json.dumps({"object": "page", "entry": [entry]}).encode()


def change(leadgen_id, **value):
    return {"field": "leadgen", "value": {"leadgen_id": leadgen_id, "form_id": "444444444444", "page_id": "101112131415161",
                                          "created_time": 1767605400, **value}}


def test_metas_signature_vector():
    signed = {"X-Hub-Signature-256": V1_SIGNATURE}
    verify_signature(request(V1_BODY, **signed), V1_SECRET)
    with pytest.raises(WebhookRejected, match="does not match"):
        verify_signature(request(V1_BODY + b" ", **signed), V1_SECRET)
    with pytest.raises(WebhookRejected, match="does not match"):
        verify_signature(request(V1_BODY, **signed), V1_SECRET[:-1])
    # The Facebook adapter accepts the signature, then refuses a body that is no Page notification.
    with pytest.raises(WebhookRejected) as refused:
        FacebookGraphAPI(ProviderSettings()).verify_webhook({}, {"app_secret": V1_SECRET}, request(V1_BODY, **signed))
    assert refused.value.status == 400 and 'object "page"' in refused.value.reason


def test_a_leadgen_change_becomes_a_lead_event():
    adapter = FacebookGraphAPI(ProviderSettings())
    events = adapter.parse_webhook({}, request(page_body(change("900000000000001", ad_id="444444444"),
                                                         change(900000000000002, page_id=None, created_time="x"))))
    assert events == [
        LeadEvent(leadgen_id="900000000000001", form_id="444444444444", page_id="101112131415161", ad_id="444444444",
                  created_time=1767605400.0),
        # A number for an id is read as its digits; the entry's id stands in for a missing page_id.
        LeadEvent(leadgen_id="900000000000002", form_id="444444444444", page_id="101112131415161", ad_id=None,
                  created_time=None)]


def test_dedup_keys_identify_the_leads_whatever_the_serialisation():
    adapter = FacebookGraphAPI(ProviderSettings())
    one = adapter.webhook_dedup_key(request(page_body(change("900000000000001"))))
    assert one == "leadgen:900000000000001"
    two = adapter.webhook_dedup_key(request(page_body(change("900000000000001"), change("900000000000002"))))
    swapped = adapter.webhook_dedup_key(request(page_body(change("900000000000002", ad_id="1"),
                                                          change("900000000000001"))))
    assert two == swapped and two.startswith("leadgen:") and len(two) == len("leadgen:") + 64
    # Anything else than leads is identified by its exact body.
    with_message = page_body(change("900000000000001"), messaging=[{"message": {"mid": "m_1"}}])
    assert adapter.webhook_dedup_key(request(with_message)) != one
    assert adapter.webhook_dedup_key(request(b"not json")) == adapter.webhook_dedup_key(request(b"not json"))


@pytest.mark.parametrize("value,expected", [
    (1767605400, 1767605400.0), ("1767605400", 1767605400.0), ("2026-01-05T09:30:00+0000", 1767605400.0),
    ("2026-01-05T10:30:00+0100", 1767605400.0), ("yesterday", None), (True, None), (10**20, None), (-5, None),
    (float("nan"), None), (None, None)])
def test_graphs_forms_of_a_time(value, expected):
    lead = fetched_lead({"created_time": value}, "1")
    assert lead.created_time == expected


def test_answers_from_graph_are_text_without_nul_characters():
    lead = fetched_lead({"id": "1", "field_data": [
        {"name": "full_name", "values": ["Jane\x00 Doe"]}, {"name": "pets", "values": ["cat", "dog", {"x": 1}]},
        {"name": "", "values": ["dropped"]}, "junk", {"name": "n" * 101, "values": ["too long a key"]},
        {"name": "email", "values": "not a list"}]}, "1", "444444444444")
    assert lead.field_data == (("full_name", ("Jane Doe",)), ("pets", ("cat", "dog")), ("email", ()))
    assert lead.form_id == "444444444444"
    mapping = {"pets": "fields.animals", "email": "skip"}
    assert answer_targets(lead.field_data, mapping) == [("full_name", "Jane Doe", "name"),
                                                        ("pets", "cat, dog", "fields.animals")]


@pytest.mark.parametrize("mapping,problem", [
    (None, None), ({}, None), ({"company_name": "fields.company", "work_email": "email", "consent": "skip"}, None),
    ([], "Give an object"), ("text", "Give an object"), ({"q": "password"}, "goes nowhere known"),
    ({"q": "fields."}, "goes nowhere known"), ({"q": 3}, "goes nowhere known"),
    ({"q": "fields." + "x" * 101}, "at most 100 characters"), ({" ": "email"}, "1 to 100 characters"),
    ({f"q{n}": "skip" for n in range(101)}, "At most 100 questions")])
def test_the_field_mappings_rules(mapping, problem):
    found = mapping_problem(mapping)
    assert (found is None) if problem is None else (problem in found)
    errors = FacebookGraphAPI(ProviderSettings()).validate({"lead_field_mapping": mapping}, {})
    assert ("lead_field_mapping" in errors) == (problem is not None)
