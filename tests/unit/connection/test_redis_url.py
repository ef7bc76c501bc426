"""KB_REDIS_URL: the three deployment modes, credentials that are never shown, and clear refusals."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from kb_mcp.config import Settings, describe_validation_error
from kb_mcp.connection.url import parse_redis_url


def test_standalone_keeps_its_url() -> None:
    target = parse_redis_url("rediss://user:s3cret@cache.internal:6380/2")
    assert (target.mode, target.tls, target.nodes, target.db) == ("standalone", True, (("cache.internal", 6380),), 2)
    assert (target.username, target.password) == ("user", "s3cret")
    assert "s3cret" not in target.display and "s3cret" not in repr(target)


def test_cluster_takes_several_seed_nodes() -> None:
    target = parse_redis_url("redis+cluster://:pw@10.0.0.1:7000,10.0.0.2:7001,10.0.0.3")
    assert target.mode == "cluster" and not target.tls
    assert target.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 7001), ("10.0.0.3", 6379))
    assert target.password == "pw" and target.display == "redis+cluster://10.0.0.1:7000,10.0.0.2:7001,10.0.0.3:6379"
    assert parse_redis_url("rediss+cluster://h:1/0").tls


def test_sentinel_names_its_service_and_db() -> None:
    target = parse_redis_url("redis+sentinel://:data-pw@s1:26379,s2/kb-master/3?sentinel_password=sent-pw")
    assert target.mode == "sentinel"
    assert target.nodes == (("s1", 26379), ("s2", 26379))
    assert (target.service, target.db, target.password, target.sentinel_password) == ("kb-master", 3, "data-pw",
                                                                                        "sent-pw")
    assert target.display == "redis+sentinel://s1:26379,s2:26379/kb-master/3"


@pytest.mark.parametrize(("url", "problem"), [
    ("http://127.0.0.1:6379", "must start with redis://"),
    ("127.0.0.1:6379", "must start with redis://"),
    ("redis://a:1,b:2", "use redis+cluster://"),
    ("redis+sentinel://s1:26379", "needs the Sentinel service name"),
    ("redis+cluster://h:7000/3", "only database 0"),
    ("redis+cluster://h:notaport", "bad host:port"),
    ("redis://h:6379/x", "bad database number"),
    ("redis+cluster://", "names no host"),
])
def test_bad_urls_are_refused_in_words(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        parse_redis_url(url)


def test_settings_refuse_a_bad_url_without_echoing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KB_REDIS_URL", "redis://:hunter2@a:1,b:2")
    with pytest.raises(ValidationError) as info:
        Settings()
    message = describe_validation_error(info.value)
    assert "KB_REDIS_URL" in message and "redis+cluster://" in message and "hunter2" not in message
    monkeypatch.setenv("KB_REDIS_URL", "redis+cluster://a:1,b:2")
    assert Settings().redis_target.mode == "cluster"
