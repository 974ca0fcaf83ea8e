"""Scratch probes for review 12b (delete when done)."""
from __future__ import annotations

import socket

import pytest

from support.ehr_tokens import Ehr
from support.fhir_bindings import bind_pima


def raw(url, request: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(request)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data and len(data) > 200:
                break
    return data


def get(url, host, token, target="/cds-services", extra=b""):
    req = (f"GET {target} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
           "Connection: close\r\n").encode() + extra + b"\r\n"
    out = raw(url, req)
    return out.split(b"\r\n", 1)[0].decode(), out.split(b"\r\n\r\n", 1)[-1][:300]


@pytest.mark.parametrize("public", [None, "https://gw.example"])
def test_host(start_service, tmp_path, public):
    ehr = Ehr(tmp_path)
    kw = {"public_url": public} if public else {}
    s = start_service(server=True, cds_issuers=ehr.trust(), unauthenticated_per_minute=4, **kw)
    bind_pima(s.settings, tmp_path)
    port = s.url.rsplit(":", 1)[1]
    cases = [
        (f"127.0.0.1:{port}", f"http://127.0.0.1:{port}/cds-services", "/cds-services"),
        ("localhost", "http://localhost/cds-services", "/cds-services"),
        ("127.0.0.1:evil", "http://127.0.0.1:evil/cds-services", "/cds-services"),
        ("localhost/other", "http://localhost/other/cds-services", "/cds-services"),
        ("x/other", "https://gw.example/other/cds-services", "/cds-services"),
        (f"127.0.0.1:{port}", "http://evil.example/cds-services", "http://evil.example/cds-services"),
        ("[::1", "http://[::1/cds-services", "/cds-services"),
    ]
    for host, aud, target in cases:
        print(public, repr(host), aud, target, "->", get(s.url, host, ehr.token(aud), target))
    assert False
