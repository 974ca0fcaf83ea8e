"""The dashboard's admin pages: the audit trail for auditors (newest first, filtered, only
who/when/what, the chain verified on a button) and the API keys for admins (a token shown
once, revocation behind a confirmation); a predictor is refused both, even by a typed URL;
every change needs the session's CSRF token; names are escaped."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import update

from medserve.storage.tables import AuditRecordRow
from support.dashboard import csrf_of, sign_in

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TOKEN = re.compile(r"ms_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")
HOSTILE = "<script>x</script>"


def audit_rows(page) -> list[str]:
    return re.findall(r"<tr>\s*<td class=\"num\">(\d+)</td>", page.text)


def test_an_auditor_sees_the_trail_newest_first_and_verifies_the_chain(service):
    with service.client() as rest:
        assert rest.get("/v1/models", headers={"X-Request-ID": "mrn-0042"}).status_code == 200
    with service.client(role=None) as client:
        assert sign_in(client, service.keys["auditor"]).status_code == 303
        trail = client.get("/ui/audit")
        verified = client.post("/ui/audit/verify", data={"csrf": csrf_of(trail)})
    assert trail.status_code == 200 and trail.headers["cache-control"] == "no-store"
    seqs = [int(s) for s in audit_rows(trail)]
    assert len(seqs) >= 2 and seqs == sorted(seqs, reverse=True)
    assert "/v1/models" in trail.text and service.key_ids["predictor"] in trail.text
    # The client's address and the request id (kept as its keyed hash) stay in the trail.
    stored_id = service.app.state.audit.log.request_id_for("mrn-0042")
    assert "127.0.0.1" not in trail.text and stored_id not in trail.text
    assert verified.status_code == 200 and "Chain OK" in verified.text
    checked = int(re.search(r"all (\d+) records verified", verified.text).group(1))
    assert checked >= max(seqs)


def test_the_trail_filters_and_a_wrong_filter_is_explained(service):
    with service.client() as rest:
        rest.get("/v1/models")
        rest.get("/v1/models/nonexistent")
    with service.client(role=None) as client:
        sign_in(client, service.keys["auditor"])
        missing = client.get("/ui/audit", params={"status": "404"})
        one = client.get("/ui/audit", params={"route": "/v1/models", "limit": "1"})
        today = client.get("/ui/audit", params={"since": "2999-01-01"})
        wrong = [client.get("/ui/audit", params=p) for p in
                 ({"since": "yesterday"}, {"status": "abc"}, {"limit": "5000"})]  # fmt: skip
    assert len(audit_rows(missing)) == 1 and "/v1/models/{name}" in missing.text
    assert len(audit_rows(one)) == 1
    assert today.status_code == 200 and "No audit record matches" in today.text
    for page in wrong:
        assert page.status_code == 400 and 'class="error"' in page.text
        assert page.headers["content-type"].startswith("text/html")


def test_verify_names_the_first_broken_record(service):
    with service.client() as rest:
        rest.get("/v1/models")
    with service.app.state.registry.engine.begin() as connection:
        connection.execute(update(AuditRecordRow).where(AuditRecordRow.seq == 1).values(status=299))
    with service.client(role=None) as client:
        sign_in(client, service.keys["auditor"])
        trail = client.get("/ui/audit")
        verified = client.post("/ui/audit/verify", data={"csrf": csrf_of(trail)})
    assert "Chain broken at record 1" in verified.text and "(0 records verified" in verified.text


def test_a_predictor_is_refused_the_audit_and_keys_pages(service):
    with service.client(role=None) as client:
        sign_in(client, service.keys["predictor"])
        models = client.get("/ui/models")
        refused = [
            client.get(p)
            for p in ("/ui/audit", "/ui/keys", f"/ui/keys/{service.key_ids['admin']}/revoke")
        ]
        verify = client.post("/ui/audit/verify", data={"csrf": csrf_of(models)})
        create = client.post("/ui/keys", data={"csrf": csrf_of(models), "role": "admin"})
    assert [page.status_code for page in refused] == [403, 403, 403]
    assert verify.status_code == 403 and create.status_code == 403
    assert len(service.app.state.keys.list()) == len(service.keys)


def test_an_auditor_is_refused_the_keys_page(service):
    with service.client(role=None) as client:
        sign_in(client, service.keys["auditor"])
        assert client.get("/ui/keys").status_code == 403


def test_an_admin_creates_a_key_shown_once_then_revokes_it(start_service):
    service = start_service(key_cache_s=30)  # revoked here: forgotten at once all the same
    with service.client(role=None) as client:
        sign_in(client, service.keys["admin"])
        listing = client.get("/ui/keys")
        created = client.post(
            "/ui/keys", data={"csrf": csrf_of(listing), "role": "predictor", "name": "ward 7"}
        )
        again = client.get("/ui/keys")
        assert created.status_code == 201 and created.headers["cache-control"] == "no-store"
        assert "it is not shown again" in created.text
        token = TOKEN.search(created.text).group(0)
        key_id = token[3:15]
        assert TOKEN.search(again.text) is None and key_id in again.text
        with service.running.client({"Authorization": f"Bearer {token}"}) as rest:
            assert rest.get("/v1/models").status_code == 200
            confirm = client.get(f"/ui/keys/{key_id}/revoke")
            assert confirm.status_code == 200 and f"Revoke key {key_id}" in confirm.text
            done = client.post(f"/ui/keys/{key_id}/revoke", data={"csrf": csrf_of(confirm)})
            assert done.status_code == 303 and done.headers["location"] == "/ui/keys"
            assert rest.get("/v1/models").status_code == 401
        after = client.get("/ui/keys")
    assert f"/ui/keys/{key_id}/revoke" not in after.text  # no revoke button once revoked


def test_changes_without_the_csrf_token_are_refused(service):
    before = len(service.app.state.keys.list())
    with service.client(role=None) as client:
        sign_in(client, service.keys["admin"])
        create = client.post("/ui/keys", data={"role": "admin", "name": "sneaky"})
        revoke = client.post(f"/ui/keys/{service.key_ids['predictor']}/revoke")
        verify = client.post("/ui/audit/verify", data={"csrf": "forged"})
    assert [create.status_code, revoke.status_code, verify.status_code] == [403, 403, 403]
    assert len(service.app.state.keys.list()) == before
    assert service.app.state.keys.get(service.key_ids["predictor"]).active


@pytest.mark.parametrize(
    ("path", "data", "status"),
    [
        ("/ui/keys", {"role": "superuser", "name": "x"}, 422),
        ("/ui/keys", {"role": "admin", "name": "n" * 256}, 422),
        ("/ui/keys", {"name": "no role"}, 422),
        ("/ui/keys/not-a-key-id/revoke", {}, 400),
        ("/ui/keys/0123456789ab/revoke", {}, 400),  # well formed, but no such key
    ],
)
def test_bad_input_gives_the_page_again_with_a_reason(service, path, data, status):
    before = len(service.app.state.keys.list())
    with service.client(role=None) as client:
        sign_in(client, service.keys["admin"])
        csrf = csrf_of(client.get("/ui/keys"))
        answer = client.post(path, data={"csrf": csrf, **data})
        if path.endswith("/revoke"):
            confirm = client.get(path)
            assert confirm.status_code == status and 'class="error"' in confirm.text
    assert answer.status_code == status and 'class="error"' in answer.text
    assert answer.headers["content-type"].startswith("text/html")
    assert len(service.app.state.keys.list()) == before


def test_a_hostile_key_name_is_escaped(service):
    with service.client(role=None) as client:
        sign_in(client, service.keys["admin"])
        csrf = csrf_of(client.get("/ui/keys"))
        created = client.post("/ui/keys", data={"csrf": csrf, "role": "auditor", "name": HOSTILE})
        listing = client.get("/ui/keys")
        key_id = TOKEN.search(created.text).group(0)[3:15]
        confirm = client.get(f"/ui/keys/{key_id}/revoke")
    for page in (created, listing, confirm):
        assert HOSTILE not in page.text and "&lt;script&gt;x&lt;/script&gt;" in page.text
