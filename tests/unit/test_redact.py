from __future__ import annotations

import pytest

from opslib.redact import MASK, fingerprint, looks_secret_name, redact_mapping, redact_text


@pytest.mark.parametrize(
    "name", ["password", "POSTGRES_PASSWORD", "api_key", "API-KEY", "dsn", "DB_DSN", "token",
             "AWS_SECRET_ACCESS_KEY", "private_key", "key", "auth_header"],
)
def test_secret_names(name: str) -> None:
    assert looks_secret_name(name)


@pytest.mark.parametrize("name", ["project", "threshold_pct", "apply", "keyboard", "monkey_count"])
def test_plain_names(name: str) -> None:
    assert not looks_secret_name(name)


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("connecting to postgresql://shop:hunter2pass@db:5432/shop", "hunter2pass"),
        ('{"authorization": "Bearer abcdefghijklmnop"}', "abcdefghijklmnop"),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
        ("GET /login?user=bob&password=s3cretvalue HTTP/1.1", "s3cretvalue"),
        ('{"msg": "x", "api_key": "k-123456789"}', "k-123456789"),
        ("token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abcdefgh", "eyJhbGciOiJIUzI1NiJ9"),
        ("key id AKIAABCDEFGHIJKLMNOP used", "AKIAABCDEFGHIJKLMNOP"),
    ],
)
def test_redact_text_removes_secret(text: str, secret: str) -> None:
    out = redact_text(text)
    assert secret not in out
    assert MASK in out


def test_redact_text_keeps_plain_text() -> None:
    line = '{"level": "info", "msg": "GET /products 200", "latency_ms": 12.5}'
    assert redact_text(line) == line


def test_redact_text_extra_literal_secret() -> None:
    assert redact_text("the value is plainword here", ["plainword"]) == f"the value is {MASK} here"


def test_redact_mapping_recurses() -> None:
    data = {"project": "shop", "dsn": "postgresql://u:p@h/db",
            "nested": {"PASSWORD": "x1", "url": "redis://:pw123456@cache:6379"},
            "items": ["ok", "postgresql://a:bsecret@h/d"]}
    out = redact_mapping(data)
    assert out["project"] == "shop"
    assert out["dsn"] == MASK
    assert out["nested"]["PASSWORD"] == MASK
    assert "pw123456" not in out["nested"]["url"]
    assert "bsecret" not in out["items"][1]
    assert data["dsn"] == "postgresql://u:p@h/db"  # input untouched


def test_fingerprint_stable_and_opaque() -> None:
    fp = fingerprint("shop-demo-password")
    assert fp == fingerprint("shop-demo-password")
    assert fp.startswith("sha256:") and len(fp) == len("sha256:") + 12
    assert "shop" not in fp
    assert fp != fingerprint("other")
