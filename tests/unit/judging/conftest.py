"""Fixtures of the judge tests."""

from __future__ import annotations

import secrets

import pytest


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh fake key in PREFOPT_TEST_KEY (the configs' api_key_env), no proxy between the
    client and the local stand-in server, and the OpenAI client logging all it can, so a test
    that looks for the key in logs sees the most."""
    key = "sk-test-" + secrets.token_hex(16)
    monkeypatch.setenv("PREFOPT_TEST_KEY", key)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("OPENAI_LOG", "debug")
    return key
