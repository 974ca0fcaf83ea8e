"""The dashboard's security over HTTP: a session cookie made from an API key (HttpOnly,
SameSite=Strict, no-store pages), CSRF on every change, and a session that ends with
sign-out, expiry or its key's revocation; a bearer key admits no page; a role that may
not is refused even for a URL typed by hand; HTML in names and values is escaped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from sqlalchemy import update

from medserve.config import Settings
from medserve.flows import TrainRequest, train_and_register
from medserve.http.app import create_app
from medserve.storage.tables import UiSessionRow
from support.dashboard import csrf_of, sign_in

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def stage(service, ref: str) -> str:
    return service.app.state.registry.get(ref).stage


def test_sign_in_gives_a_private_session_cookie(service):
    with service.client(role=None) as client:
        answer = sign_in(client, service.keys["admin"])
        assert answer.status_code == 303 and answer.headers["location"] == "/ui/models"
        cookie = next(c for c in answer.headers.get_list("set-cookie")
                      if c.startswith("medserve_session="))  # fmt: skip
        flags = {part.strip().lower() for part in cookie.split(";")}
        assert {"httponly", "samesite=strict", "path=/ui"} <= flags
        assert any(flag.startswith("max-age=") for flag in flags)
        assert service.keys["admin"] not in cookie  # the key itself is never the cookie
        models = client.get("/ui/models")
    assert models.status_code == 200 and "heart" in models.text
    assert models.headers["cache-control"] == "no-store"
    assert "script-src 'self'" in models.headers["content-security-policy"]


def test_the_cookie_is_secure_behind_tls(start_service):
    service = start_service(public_url="https://medserve.example.org")
    with service.running.client({}, base_url="https://testserver") as client:
        answer = sign_in(client, service.keys["admin"])
    cookie = next(c for c in answer.headers.get_list("set-cookie") if "medserve_session" in c)
    assert "secure" in cookie.lower()


def test_a_wrong_key_or_a_forged_sign_in_form_opens_nothing(service):
    with service.client(role=None) as client:
        wrong = sign_in(client, "ms_000000000000_" + "x" * 43)
        forged = client.post(
            "/ui/login", data={"api_key": service.keys["admin"], "sign_in_token": "forged"}
        )
        after = client.get("/ui/models")
    assert wrong.status_code == 401 and "not valid" in wrong.text
    assert forged.status_code == 403
    assert not any("medserve_session=" in c for c in wrong.headers.get_list("set-cookie"))
    assert after.status_code == 303 and after.headers["location"] == "/ui/login"


def test_a_bearer_key_admits_no_dashboard_page(service):
    with service.client("admin") as client:
        page = client.get("/ui/models")
        change = client.post("/ui/models/heart/versions/1/archive")
    assert page.status_code == 303 and change.status_code == 401
    assert stage(service, "heart:1") == "production"


@pytest.mark.parametrize("token", [None, "", "forged-token"])
def test_a_change_without_the_sessions_csrf_token_is_refused(service, token):
    with service.client(role=None) as client:
        sign_in(client, service.keys["admin"])
        data = {} if token is None else {"csrf": token}
        answer = client.post("/ui/models/heart/versions/1/archive", data=data)
    assert answer.status_code == 403 and "CSRF" in answer.text
    assert stage(service, "heart:1") == "production"


def test_an_admin_confirms_with_the_token_and_is_told_what_cannot_be(service):
    with service.client(role=None) as client:
        sign_in(client, service.keys["admin"])
        confirm = client.get("/ui/models/heart/versions/1/archive")
        assert confirm.status_code == 200 and "Archive heart:1?" in confirm.text
        done = client.post("/ui/models/heart/versions/1/archive", data={"csrf": csrf_of(confirm)})
    # heart:1 serves: archiving it would leave no production version (the CLI's --force).
    assert done.status_code == 400 and "production" in done.text
    assert done.headers["content-type"].startswith("text/html")
    assert stage(service, "heart:1") == "production"


def test_a_predictor_is_refused_staging_even_by_a_typed_url(service):
    with service.client(role=None) as client:
        sign_in(client, service.keys["predictor"])
        models = client.get("/ui/models/heart")
        typed = client.get("/ui/models/heart/versions/1/archive")
        posted = client.post("/ui/models/heart/versions/1/archive", data={"csrf": csrf_of(models)})
    assert models.status_code == 200 and "Archive…" not in models.text
    assert typed.status_code == 403 and typed.headers["content-type"].startswith("text/html")
    assert posted.status_code == 403
    assert stage(service, "heart:1") == "production"


def test_sign_out_ends_the_session_on_the_server(service):
    with service.client(role=None) as client:
        sign_in(client, service.keys["admin"])
        page = client.get("/ui/models")
        kept = client.cookies.get("medserve_session")
        out = client.post("/ui/logout", data={"csrf": csrf_of(page)})
        assert out.status_code == 303 and out.headers["location"] == "/ui/login"
    with service.client(role=None) as replay:  # the old cookie, kept and sent again
        replay.cookies.set("medserve_session", kept, path="/ui")
        assert replay.get("/ui/models").status_code == 303


def test_a_stale_session_and_a_revoked_keys_session_are_refused(service):
    with service.client(role=None) as stale, service.client(role=None) as revoked:
        sign_in(stale, service.keys["admin"])
        sign_in(revoked, service.keys["predictor"])
        with service.app.state.registry.engine.begin() as connection:
            connection.execute(
                update(UiSessionRow)
                .where(UiSessionRow.key_id == service.key_ids["admin"])
                .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )
        service.app.state.keys.revoke(service.key_ids["predictor"])
        assert stale.get("/ui/models").status_code == 303
        assert revoked.get("/ui/models").status_code == 303


HOSTILE = "<script>alert(1)</script>"


def test_html_in_names_and_values_is_escaped(tmp_path, heart_csv, serve_app):
    settings = Settings(home=tmp_path / "home")
    frame = pd.read_csv(heart_csv).rename(columns={"num": HOSTILE, "cp": "<img src=x onerror=1>"})
    frame["sex"] = frame["sex"].replace({"Male": "<b>Male</b>"})
    train_and_register(
        settings,
        TrainRequest(data=frame, name="hostile", target=HOSTILE, positive_if=">0",
                     family="logistic", cv=3, ignore=["id"], source_name="hostile.csv"),
    )  # fmt: skip
    service = serve_app(create_app(settings), settings)
    with service.client(role=None) as client:
        sign_in(client, service.keys["admin"])
        paths = ("/ui/models", "/ui/models/hostile", "/ui/models/hostile/versions/1/report",
                 "/ui/models/hostile/whatif", "/ui/models/hostile/monitoring", "/ui/audit")
        pages = [client.get(p) for p in paths]  # fmt: skip
    for page in pages:
        assert page.status_code == 200, page.text
        for raw in (HOSTILE, "<img src=x onerror=1>", "<b>Male</b>"):
            assert raw not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[1].text
    assert "&lt;img src=x onerror=1&gt;" in pages[3].text  # the what-if form's label


def test_forged_sign_in_forms_count_against_the_address(start_service):
    service = start_service(unauthenticated_per_minute=3)
    with service.client(role=None) as client:
        statuses = [
            client.post("/ui/login", data={"api_key": "x", "sign_in_token": "forged"}).status_code
            for _ in range(5)
        ]
        as_json = client.post("/ui/login", json={"api_key": service.keys["admin"]})
    assert statuses[:3] == [403] * 3 and statuses[-1] == 429
    assert as_json.status_code == 415


def test_signing_in_again_ends_the_browsers_earlier_session(service):
    with service.client(role=None) as client:
        sign_in(client, service.keys["admin"])
        first = client.cookies.get("medserve_session")
        sign_in(client, service.keys["admin"])
        assert client.get("/ui/models").status_code == 200
    with service.client(role=None) as replay:
        replay.cookies.set("medserve_session", first, path="/ui")
        assert replay.get("/ui/models").status_code == 303


def test_an_unknown_model_or_version_is_a_page_not_a_problem_document(service):
    with service.client(role=None) as client:
        sign_in(client, service.keys["admin"])
        model = client.get("/ui/models/nosuch")
        version = client.get("/ui/models/heart/versions/99/promote")
    for page in (model, version):
        assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
        assert page.headers["cache-control"] == "no-store"
    assert "Promote heart:99?" not in version.text
