def test_create_configure_and_read_sendgrid(api):
    r = api.post("/api/integrations/", json={"integration_type": "email", "name": "Mail", "provider": "sendgrid"})
    assert r.status_code == 201, r.json
    integration_id = r.json["id"]
    r = api.post(f"/api/integrations/{integration_id}/configure/email/",
                 json={"from_email": "hello@example.com", "api_key": "SG.secret-value"})
    assert r.status_code == 200, r.json
    assert r.json["secrets"] == {"api_key": True}
    assert "SG.secret-value" not in r.get_data(as_text=True)
    assert r.json["webhook_url"].startswith("https://switchboard.example.com/api/webhooks/sendgrid/")
