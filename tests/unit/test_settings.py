"""Settings: a bad value fails at start naming the variable to fix, and secrets are never echoed."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from kb_mcp.cli.settings_doc import markdown
from kb_mcp.config import Settings, describe_validation_error


@pytest.mark.parametrize(("var", "value", "says"), [
    ("KB_TIMEOUT_REDIS", "0", "greater than 0"),
    ("KB_TIMEOUT_REDIS", "soon", "valid number"),
    ("KB_VECTOR_ALGORITHM", "ivf", "hnsw"),
    ("KB_REDIS_URL", "http://localhost", "must start with redis://"),
    ("KB_NAMESPACE", "has space", "pattern"),
    ("KB_DURABILITY", "always", "fsync"),
    ("KB_TIMEOUT_TOOL", "soon", "valid number"),
    ("KB_REDIS_MAX_CONNECTIONS", "0", "greater than or equal to 1"),
    ("KB_EMBEDDING_PROVIDER", "magic", "onnx"),
])
def test_a_bad_value_names_its_variable(monkeypatch: pytest.MonkeyPatch, var: str, value: str, says: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ValidationError) as info:
        Settings()
    message = describe_validation_error(info.value)
    assert message.startswith("invalid configuration:") and f"{var}:" in message and says in message


def test_secrets_are_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KB_AUTH_TOKEN", "short-secret")
    monkeypatch.setenv("KB_REDIS_URL", "ftp://:hunter2@host")
    with pytest.raises(ValidationError) as info:
        Settings()
    message = describe_validation_error(info.value)
    assert "KB_AUTH_TOKEN" in message and "KB_REDIS_URL" in message
    assert "short-secret" not in message and "hunter2" not in message


def test_the_timeouts_policy_comes_from_the_four_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KB_TIMEOUT_REDIS", "1.5")
    monkeypatch.setenv("KB_TIMEOUT_TOOL", "20")
    t = Settings().timeouts
    assert (t.redis_s, t.file_s, t.index_s, t.tool_s) == (1.5, 5.0, 10.0, 20.0)
    assert (t.limit_s("redis"), t.limit_s("file"), t.limit_s("index")) == (1.5, 5.0, 10.0)


def test_a_copy_derives_its_url_and_timeouts_again() -> None:
    settings = Settings(redis_url="redis://a:1/0", timeout_redis=1.0)
    assert (settings.redis_target.nodes, settings.timeouts.redis_s) == ((("a", 1),), 1.0)
    copy = settings.model_copy(update={"redis_url": "redis+cluster://b:2", "timeout_redis": 3.0})
    assert (copy.redis_target.mode, copy.redis_target.nodes, copy.timeouts.redis_s) == ("cluster", (("b", 2),), 3.0)


def test_the_configuration_page_is_generated_from_the_settings() -> None:
    """docs/configuration.md lists every setting with its default and description; regenerate it on a change:
    python -m kb_mcp.cli.settings_doc > docs/configuration.md"""
    page = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
    assert page.read_text(encoding="utf-8") == markdown()
    for name, field in Settings.model_fields.items():
        assert field.description, f"KB_{name.upper()} has no description"
        assert f"`KB_{name.upper()}`" in page.read_text(encoding="utf-8")
