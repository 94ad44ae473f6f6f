"""Contacts and tags (issue #4, first slice): normalisation, one contact per email and per phone
(also under concurrency), the JSON API contract, organisation isolation, and the pages."""
import threading

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import Contact, ContactEvent, Organization, Tag
from app.services import contacts as svc
from tests.conftest import csrf_token_from


def org_of(user) -> int:
    return user.organization_id


def upsert(org_id, data, source="test"):
    contact, created, errors = svc.upsert_contact(org_id, data, source)
    assert not errors, errors
    db.session.commit()
    return contact, created


def count_contacts() -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(Contact))


# -- normalisation ---------------------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    ("Jane.Doe@Example.COM", "jane.doe@example.com"),
    ("  jane@example.com ", "jane@example.com"),
    ("", None), (None, None),
])
def test_normalise_email(raw, expected):
    assert svc.normalise_email(raw) == (expected, None)


@pytest.mark.parametrize("raw", ["not-an-email", "a@", "@example.com", 42, "x" * 330 + "@example.com"])
def test_normalise_email_rejects(raw):
    value, error = svc.normalise_email(raw)
    assert value is None and error


@pytest.mark.parametrize("raw", ["+1 (415) 555-2671", "4155552671", "(415) 555-2671", "415.555.2671",
                                 "+14155552671", "1-415-555-2671"])
def test_normalise_phone_us_formats_are_one_number(raw):
    assert svc.normalise_phone(raw, "US") == ("+14155552671", None)


def test_normalise_phone_uses_the_default_country():
    assert svc.normalise_phone("020 7946 0018", "GB") == ("+442079460018", None)
    assert svc.normalise_phone("+44 20 7946 0018", "US") == ("+442079460018", None)
    for bad in ("12", "hello", "+1 555", ["4155552671"]):
        value, error = svc.normalise_phone(bad, "US")
        assert value is None and error


# -- upsert and duplicates -------------------------------------------------------------------

def test_duplicates_by_email_differ_only_in_case(app, admin):
    first, created = upsert(org_of(admin), {"email": "Jane@Example.com", "name": "Jane Doe"})
    assert created and first.email == "jane@example.com"
    assert first.first_name == "Jane" and first.last_name == "Doe"
    again, created = upsert(org_of(admin), {"email": "JANE@example.COM", "phone": "4155552671",
                                            "fields": {"plan": "pro"}})
    assert not created and again.id == first.id
    assert again.phone == "+14155552671" and again.fields == {"plan": "pro"} and again.name == "Jane Doe"
    assert count_contacts() == 1
    kinds = [e.kind for e in db.session.get(Contact, first.id).events]
    assert kinds == ["created", "updated"]


def test_duplicates_by_phone_in_different_formats(app, admin):
    first, created = upsert(org_of(admin), {"phone": "+1 (415) 555-2671", "name": "Sam"})
    assert created and first.phone == "+14155552671"
    again, created = upsert(org_of(admin), {"phone": "4155552671", "email": "sam@example.com",
                                            "name": "Samuel Other"})
    assert not created and again.id == first.id
    assert again.email == "sam@example.com" and again.name == "Sam"  # fills missing values only
    assert count_contacts() == 1


def test_email_match_wins_and_a_phone_owned_by_another_contact_stays_there(app, admin):
    by_phone, _ = upsert(org_of(admin), {"phone": "+14155552671"})
    by_email, _ = upsert(org_of(admin), {"email": "ann@example.com"})
    found, created = upsert(org_of(admin), {"email": "ann@example.com", "phone": "415 555 2671"})
    assert not created and found.id == by_email.id and found.phone is None
    assert db.session.get(Contact, by_phone.id).phone == "+14155552671"
    assert count_contacts() == 2


def test_custom_fields_merge_and_empty_values_are_many(app, admin):
    contact, _ = upsert(org_of(admin), {"email": "a@example.com", "fields": {"a": "1", "b": "2"}})
    upsert(org_of(admin), {"email": "a@example.com", "fields": {"b": "3", "c": ["x", "y"]}})
    db.session.expire_all()
    assert db.session.get(Contact, contact.id).fields == {"a": "1", "b": "3", "c": ["x", "y"]}
    # Many contacts without a phone, many without an email: NULLs do not collide.
    upsert(org_of(admin), {"email": "b@example.com"})
    upsert(org_of(admin), {"phone": "+14155550100"})
    upsert(org_of(admin), {"phone": "+14155550101"})
    assert count_contacts() == 4


def test_same_person_in_two_organisations_is_two_contacts(app, admin, other_admin):
    upsert(org_of(admin), {"email": "same@example.com"})
    upsert(org_of(other_admin), {"email": "same@example.com"})
    assert count_contacts() == 2


def test_organisation_default_country_reads_local_numbers(app, admin):
    org = db.session.get(Organization, org_of(admin))
    assert org.default_country == "US"
    org.default_country = "GB"
    db.session.commit()
    contact, _ = upsert(org_of(admin), {"phone": "020 7946 0018"})
    assert contact.phone == "+442079460018"


@pytest.mark.parametrize("data, field", [
    ({}, "email"),
    ({"name": "Only a name"}, "email"),
    ({"email": "nope"}, "email"),
    ({"phone": "12"}, "phone"),
    ({"email": "a@example.com", "fields": ["x"]}, "fields"),
    ({"email": "a@example.com", "fields": {"x": {"nested": 1}}}, "fields"),
    ({"email": "a@example.com", "name": "x" * 201}, "name"),
    ({"email": "a@example.com", "name": 5}, "name"),
    ({"email": "a@example.com", "tags": "x" * 101}, "tags"),
    ({"email": "a@example.com", "tags": [1]}, "tags"),
    ({"email": "a@example.com", "colour": "red"}, "colour"),
])
def test_upsert_rejects_bad_input_by_field(app, admin, data, field):
    contact, created, errors = svc.upsert_contact(org_of(admin), data, "test")
    assert contact is None and field in errors
    db.session.rollback()
    assert count_contacts() == 0


def _race(app, org_id, payloads):
    """Run one upsert per payload, each in its own thread and app context, released together."""
    barrier = threading.Barrier(len(payloads))
    results, failures = [], []

    def work(data):
        with app.app_context():
            try:
                barrier.wait(timeout=10)
                contact, created, errors = svc.upsert_contact(org_id, data, "race")
                assert not errors, errors
                db.session.commit()
                results.append((contact.id, created))
            except Exception as exc:  # reported to the test below
                failures.append(repr(exc))
            finally:
                db.session.remove()

    threads = [threading.Thread(target=work, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not failures, failures
    return results


@pytest.mark.parametrize("round_", range(3))
def test_simultaneous_upserts_of_one_person_make_one_contact(app, admin, round_):
    payloads = [{"email": email, "phone": phone, "name": "Racer", "tags": ["lead"], "fields": {f"k{i}": i}}
                for i, (email, phone) in enumerate([
                    ("racer@example.com", "+1 (415) 555-2671"), ("RACER@example.com", "4155552671"),
                    ("Racer@Example.com", "415-555-2671"), ("racer@EXAMPLE.com", "+14155552671"),
                    ("racer@example.com", "(415) 555 2671"), ("RACER@EXAMPLE.COM", "415.555.2671")])]
    results = _race(app, org_of(admin), payloads)
    assert len(results) == len(payloads)
    assert count_contacts() == 1
    assert len({cid for cid, _ in results}) == 1 and sum(created for _, created in results) == 1
    contact = db.session.scalars(select(Contact)).one()
    assert contact.email == "racer@example.com" and contact.phone == "+14155552671"
    assert [t.name for t in contact.tags] == ["lead"]
    assert contact.fields == {f"k{i}": i for i in range(len(payloads))}
    assert db.session.scalar(select(func.count()).select_from(Tag)) == 1
    assert [e.kind for e in contact.events].count("created") == 1


def test_simultaneous_tagging_creates_one_tag(app, admin):
    org_id = org_of(admin)
    contacts = [upsert(org_id, {"email": f"t{i}@example.com"})[0].id for i in range(4)]
    barrier = threading.Barrier(4)
    failures = []

    def work(contact_id):
        with app.app_context():
            try:
                barrier.wait(timeout=10)
                svc.apply_tags(db.session.get(Contact, contact_id), ["VIP"])
                db.session.commit()
            except Exception as exc:
                failures.append(repr(exc))
            finally:
                db.session.remove()

    threads = [threading.Thread(target=work, args=(c,)) for c in contacts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not failures, failures
    db.session.expire_all()
    assert db.session.scalar(select(func.count()).select_from(Tag)) == 1
    assert all([t.name for t in db.session.get(Contact, c).tags] == ["VIP"] for c in contacts)


def test_tags_are_case_insensitive_per_organisation(app, admin, other_admin):
    contact, _ = upsert(org_of(admin), {"email": "a@example.com", "tags": ["Newsletter", "newsletter", " NEWSLETTER "]})
    assert [t.name for t in contact.tags] == ["Newsletter"]
    assert svc.apply_tags(contact, ["NEWSletter"]) == []
    other, _ = upsert(org_of(other_admin), {"email": "a@example.com", "tags": ["newsletter"]})
    db.session.commit()
    assert db.session.scalar(select(func.count()).select_from(Tag)) == 2
    assert [t.name for t in other.tags] == ["newsletter"]


# -- JSON API --------------------------------------------------------------------------------

CONTRACT = {"id", "name", "email", "phone", "tags", "source", "created_at"}


def test_api_upsert_list_and_detail_contract(api):
    response = api.post("/api/contacts/", json={"name": "Jane Doe", "email": "Jane@Example.com",
                                                "phone": "+1 (415) 555-2671", "fields": {"plan": "pro"},
                                                "tags": ["lead", "vip"]})
    assert response.status_code == 201, response.json
    created = response.json
    assert created["email"] == "jane@example.com" and created["phone"] == "+14155552671"
    assert created["source"] == "api" and created["tags"] == ["lead", "vip"]
    assert created["fields"] == {"plan": "pro"}
    again = api.post("/api/contacts/", json={"email": "JANE@example.com", "phone": "4155552671"})
    assert again.status_code == 200 and again.json["id"] == created["id"]

    listed = api.get("/api/contacts/")
    assert listed.status_code == 200 and len(listed.json) == 1
    assert set(listed.json[0]) == CONTRACT
    assert listed.json[0]["created_at"].endswith("Z")

    detail = api.get(f"/api/contacts/{created['id']}/").json
    assert set(detail) >= CONTRACT | {"fields", "timeline"}
    assert [e["kind"] for e in detail["timeline"]] == ["created", "tagged"]
    assert set(detail["timeline"][0]) == {"kind", "description", "data", "occurred_at"}


def test_api_filters_normalise_email_and_phone(api):
    a = api.post("/api/contacts/", json={"email": "a@example.com", "phone": "4155552671", "tags": ["vip"]}).json
    b = api.post("/api/contacts/", json={"email": "b@example.com", "tags": ["Lead"]}).json
    ids = lambda r: [c["id"] for c in r.json]  # noqa: E731
    assert ids(api.get("/api/contacts/?email=A@EXAMPLE.com")) == [a["id"]]
    assert ids(api.get("/api/contacts/", query_string={"phone": "+1 (415) 555-2671"})) == [a["id"]]
    assert ids(api.get("/api/contacts/?tag=lead")) == [b["id"]]
    assert ids(api.get("/api/contacts/?tag=VIP&email=a@example.com")) == [a["id"]]
    assert ids(api.get("/api/contacts/?tag=nothing")) == []
    assert ids(api.get("/api/contacts/?email=nobody@example.com")) == []
    assert set(ids(api.get("/api/contacts/"))) == {a["id"], b["id"]}
    assert api.get("/api/contacts/?per_page=1").headers["X-Total-Count"] == "2"
    bad = api.get("/api/contacts/?email=nope&phone=12")
    assert bad.status_code == 400 and set(bad.json["errors"]) == {"email", "phone"}


@pytest.mark.parametrize("body, field", [
    ({}, "email"),
    ({"email": "bad"}, "email"),
    ({"phone": "555"}, "phone"),
    ({"email": "a@example.com", "fields": "x"}, "fields"),
    ({"email": "a@example.com", "tags": {"a": 1}}, "tags"),
    ({"email": "a@example.com", "id": 4}, "id"),
])
def test_api_upsert_errors_by_field(api, body, field):
    response = api.post("/api/contacts/", json=body)
    assert response.status_code == 400 and field in response.json["errors"]
    assert count_contacts() == 0


def test_api_malformed_bodies_and_auth(app, api):
    assert api.post("/api/contacts/", data="{", content_type="application/json").status_code == 400
    assert api.post("/api/contacts/", json=["a@example.com"]).json["errors"]["body"]
    assert app.test_client().get("/api/contacts/").status_code == 401
    assert app.test_client().post("/api/contacts/", json={"email": "a@example.com"}).status_code == 401
    assert api.get(f"/api/contacts/{2**31}/").status_code == 404


def test_api_tag_management(api):
    contact = api.post("/api/contacts/", json={"email": "a@example.com"}).json
    url = f"/api/contacts/{contact['id']}/tags/"
    response = api.post(url, json={"tags": ["VIP", "Lead", "vip"]})
    assert response.status_code == 200 and response.json["tags"] == ["Lead", "VIP"]
    assert api.post(url, json={"tags": []}).status_code == 400
    assert api.post(url, json={"tags": "x" * 101}).json["errors"]["tags"]
    assert api.post(url, json={}).status_code == 400
    assert api.delete(f"{url}vip/").status_code == 204
    assert api.get(f"/api/contacts/{contact['id']}/").json["tags"] == ["Lead"]
    assert api.delete(f"{url}vip/").status_code == 404  # no longer on the contact
    assert api.delete(f"{url}unknown/").status_code == 404
    timeline = api.get(f"/api/contacts/{contact['id']}/").json["timeline"]
    assert [e["kind"] for e in timeline] == ["created", "tagged", "untagged"]


@pytest.fixture
def theirs(other_api, other_admin):
    contact = other_api.post("/api/contacts/", json={"name": "Their Person", "email": "their@example.com",
                                                     "tags": ["secret-tag"]}).json
    tag = db.session.scalar(select(Tag).where(Tag.organization_id == other_admin.organization_id))
    return contact["id"], tag.id


def test_api_other_organisation_is_404(api, theirs):
    contact_id, _ = theirs
    assert api.get(f"/api/contacts/{contact_id}/").status_code == 404
    assert api.post(f"/api/contacts/{contact_id}/tags/", json={"tags": ["mine"]}).status_code == 404
    assert api.delete(f"/api/contacts/{contact_id}/tags/secret-tag/").status_code == 404
    assert api.get("/api/contacts/").json == []
    assert api.get("/api/contacts/?email=their@example.com").json == []
    assert api.get("/api/contacts/?tag=secret-tag").json == []
    # Upserting the same email in our organisation makes our own contact, leaving theirs alone.
    mine = api.post("/api/contacts/", json={"email": "their@example.com", "name": "Mine"})
    assert mine.status_code == 201 and mine.json["id"] != contact_id
    db.session.expire_all()
    stored = db.session.get(Contact, contact_id)
    assert stored.name == "Their Person" and [t.name for t in stored.tags] == ["secret-tag"]


def test_every_tag_route_gives_404_for_another_organisation(app, browser, theirs):
    contact_id, tag_id = theirs
    mine = svc.upsert_contact(browser_org(browser), {"email": "me@example.com"}, "test")[0]
    db.session.commit()
    token = csrf_token_from(browser.get("/account/password").get_data(as_text=True))
    rules = [r for r in app.url_map.iter_rules() if "tag_id" in r.arguments]
    assert len(rules) >= 3
    for rule in rules:
        url = rule.rule.replace("<int:tag_id>", str(tag_id)).replace("<int:contact_id>", str(mine.id))
        assert "<" not in url, rule.rule
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            data = {"csrf_token": token, "name": "stolen"} if method == "POST" else None
            response = browser.client.open(url, method=method, data=data)
            assert response.status_code == 404, (method, url)
            assert "secret-tag" not in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Tag, tag_id).name == "secret-tag"


def browser_org(browser) -> int:
    from app.models import User
    return db.session.scalar(select(User.organization_id).where(User.email == "admin@acme.example.com"))


# -- pages -----------------------------------------------------------------------------------

def test_contacts_page_empty_state_and_nav(browser):
    page = browser.get("/contacts").get_data(as_text=True)
    assert ">Contacts</a>" in page and "No contacts yet" in page
    assert "POST /api/contacts/" in page and "sign-up pages" in page and "Lead Ads" in page


def test_contacts_list_search_tag_filter_and_pages(browser, admin):
    org_id = org_of(admin)
    upsert(org_id, {"name": "Alice Smith", "email": "alice@example.com", "tags": ["vip"]})
    upsert(org_id, {"name": "Bob Jones", "phone": "+1 (415) 555-2671", "tags": ["lead"]})
    for i in range(55):
        upsert(org_id, {"email": f"bulk{i:02}@example.com"})
    page = browser.get("/contacts").get_data(as_text=True)
    assert "Page 1 of 2" in page and "57 contacts" in page
    assert "Page 2 of 2" in browser.get("/contacts?page=2").get_data(as_text=True)

    found = browser.get("/contacts?q=ALICE").get_data(as_text=True)
    assert "alice@example.com" in found and "Bob Jones" not in found
    by_phone = browser.get("/contacts?q=(415) 555").get_data(as_text=True)
    assert "Bob Jones" in by_phone and "Alice" not in by_phone
    by_email = browser.get("/contacts?q=bulk07").get_data(as_text=True)
    assert "bulk07@example.com" in by_email and "1 contact" in by_email

    tagged = browser.get("/contacts?tag=VIP").get_data(as_text=True)
    assert "Alice Smith" in tagged and "Bob Jones" not in tagged and 'aria-current="true">vip<' in tagged
    none = browser.get("/contacts?q=alice&tag=lead").get_data(as_text=True)
    assert "No contacts match" in none
    assert browser.get("/contacts?q=%25&page=999999999").status_code == 200


def test_contact_detail_shows_fields_tags_and_timeline(browser, admin):
    contact, _ = upsert(admin.organization_id, {"name": "Jane Doe", "email": "jane@example.com",
                                                "fields": {"company": "Acme <b>Inc</b>"}, "tags": ["vip"]})
    page = browser.get(f"/contacts/{contact.id}").get_data(as_text=True)
    assert "Jane Doe" in page and "jane@example.com" in page
    assert "Acme &lt;b&gt;Inc&lt;/b&gt;" in page and "company" in page
    assert "Created from test." in page and "Tagged vip." in page
    assert 'style="' not in page and "<script>" not in page
    assert browser.get(f"/contacts/{2**31}").status_code == 404


def test_add_and_remove_tags_on_the_detail_page(browser, admin):
    contact, _ = upsert(admin.organization_id, {"email": "jane@example.com"})
    url = f"/contacts/{contact.id}"
    response = browser.post(f"{url}/tags", {"name": "  Hot   lead "}, token_from=url)
    assert response.status_code == 302
    page = browser.get(url).get_data(as_text=True)
    assert "Hot lead" in page and "Tagged Hot lead." in page
    bad = browser.post(f"{url}/tags", {"name": ""})
    assert bad.status_code == 400 and "Give the tag a name." in bad.get_data(as_text=True)
    assert browser.client.post(f"{url}/tags", data={"name": "x"}).status_code == 400  # no CSRF token
    tag = db.session.scalar(select(Tag))
    assert browser.post(f"{url}/tags/{tag.id}/remove").status_code == 302
    db.session.expire_all()
    assert db.session.get(Contact, contact.id).tags == []
    assert "Tag Hot lead removed." in browser.get(url).get_data(as_text=True)


def test_tag_management_rename_and_delete_with_confirmation(browser, admin):
    org_id = admin.organization_id
    contact, _ = upsert(org_id, {"email": "a@example.com", "tags": ["vip", "lead"]})
    vip = svc.find_tag(org_id, "vip")
    vip_id = vip.id
    page = browser.get("/contacts/tags").get_data(as_text=True)
    assert "vip" in page and "lead" in page

    clash = browser.post(f"/contacts/tags/{vip.id}/rename", {"name": "LEAD"}, token_from="/contacts/tags")
    assert clash.status_code == 400 and "There is already a tag called lead." in clash.get_data(as_text=True)
    assert browser.post(f"/contacts/tags/{vip.id}/rename", {"name": "  "}).status_code == 400
    assert browser.post(f"/contacts/tags/{vip.id}/rename", {"name": "VIP customers"}).status_code == 302
    assert browser.post(f"/contacts/tags/{vip.id}/rename", {"name": "vip CUSTOMERS"}).status_code == 302  # own name
    db.session.expire_all()
    assert db.session.get(Tag, vip.id).name == "vip CUSTOMERS"

    confirm = browser.get(f"/contacts/tags/{vip.id}/delete").get_data(as_text=True)
    assert "Delete the tag vip CUSTOMERS?" in confirm and "1 contact" in confirm
    assert browser.post(f"/contacts/tags/{vip_id}/delete").status_code == 302
    db.session.expire_all()
    assert db.session.get(Tag, vip_id) is None
    assert [t.name for t in db.session.get(Contact, contact.id).tags] == ["lead"]
    assert db.session.get(Contact, contact.id) is not None
    assert db.session.scalar(select(func.count()).select_from(ContactEvent)) >= 2


def test_pages_need_sign_in(app):
    client = app.test_client()
    for url in ("/contacts", "/contacts/1", "/contacts/tags"):
        assert client.get(url).status_code in (302, 401)
