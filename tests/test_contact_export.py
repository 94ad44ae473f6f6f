"""Contacts exported as CSV: the list's search and tag, every column, formulas defused, nothing of
another organisation's."""
import csv
import io
import json

from tests.conftest import Browser


def rows_of(response):
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))


def test_the_list_exports_as_csv_with_its_filters(app, api, browser, other_api):
    for body in ({"email": "jane@example.com", "first_name": "Jane", "last_name": "Doe", "phone": "4155552671",
                  "tags": ["Newsletter", "VIP"], "fields": {"company": "Acme", "plan": "Pro"}},
                 {"email": "john@example.com", "name": '=HYPERLINK("http://evil.example")', "tags": ["Newsletter"]},
                 {"phone": "+442079460958", "name": "-1+2", "source": "@import"}):
        assert api.post("/api/contacts/", json=body).status_code == 201
    assert other_api.post("/api/contacts/", json={"email": "theirs@example.com"}).status_code == 201

    page = browser.get("/contacts").get_data(as_text=True)
    assert 'id="export-csv"' in page
    response = browser.get("/contacts/export.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="contacts-')
    rows = rows_of(response)
    assert list(rows[0]) == ["id", "name", "first_name", "last_name", "email", "phone", "tags", "source",
                             "created_at", "fields"]
    assert [r["email"] for r in rows] == ["", "john@example.com", "jane@example.com"]  # newest first
    jane = rows[2]
    assert (jane["name"], jane["phone"], jane["tags"], jane["source"]) == ("Jane Doe", "+14155552671",
                                                                            "Newsletter, VIP", "api")
    assert json.loads(jane["fields"]) == {"company": "Acme", "plan": "Pro"}
    assert rows[1]["name"] == "'=HYPERLINK(\"http://evil.example\")"  # a spreadsheet shows it as text
    assert (rows[0]["name"], rows[0]["phone"]) == ("'-1+2", "+442079460958")
    assert "theirs@example.com" not in response.get_data(as_text=True)

    tagged = rows_of(browser.get("/contacts/export.csv?tag=vip"))
    assert [r["email"] for r in tagged] == ["jane@example.com"]
    searched = rows_of(browser.get("/contacts/export.csv?q=john"))
    assert [r["email"] for r in searched] == ["john@example.com"]
    assert 'Export CSV (this list)' in browser.get("/contacts?q=john").get_data(as_text=True)
    assert rows_of(browser.get("/contacts/export.csv?q=nobody")) == []


def test_export_needs_a_signed_in_user(app, other_admin):
    assert app.test_client().get("/contacts/export.csv").status_code == 302
    outsider = Browser(app.test_client()).login(other_admin.email)
    assert rows_of(outsider.get("/contacts/export.csv")) == []
