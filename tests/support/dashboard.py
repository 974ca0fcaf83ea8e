"""Signing a test's HTTP client in to the dashboard as a browser does, and reading a
page's CSRF token."""

from __future__ import annotations

import re


def sign_in(client, key: str):
    """GET the sign-in form, POST the key with its form token; the answer (303 on success)."""
    form = client.get("/ui/login")
    token = re.search(r'name="sign_in_token" value="([^"]+)"', form.text).group(1)
    return client.post("/ui/login", data={"api_key": key, "sign_in_token": token})


def csrf_of(page) -> str:
    """The session's CSRF token, as a page's forms carry it."""
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
