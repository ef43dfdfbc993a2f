"""REDIS_URL parsing, and what an operator sees when it is wrong (no traceback, never the password)."""

from __future__ import annotations

import pytest

from bot.redis_url import RedisUrlError, SentinelUrl, ServerUrl, parse_redis_url
from bot.settings import Settings


@pytest.mark.parametrize(
    "url",
    ["redis://localhost:6379/0", "rediss://:secret@redis.example.internal:6380/1", "unix:///run/redis.sock?db=2"],
    ids=["plain", "tls", "unix"],
)
def test_single_server_urls_go_to_redis_py_as_they_are(url: str) -> None:
    assert parse_redis_url(url) == ServerUrl(url)


def test_sentinel_url_names_every_sentinel_the_service_and_the_database() -> None:
    parsed = parse_redis_url("redis+sentinel://:s3cret@sentinel-0:26379,sentinel-1,[::1]:26380/mymaster/2")

    assert parsed == SentinelUrl(
        sentinels=(("sentinel-0", 26379), ("sentinel-1", 26379), ("::1", 26380)),
        service="mymaster",
        db=2,
        password="s3cret",
    )


def test_tls_sentinel_url_asks_for_tls_to_the_master() -> None:
    parsed = parse_redis_url("rediss+sentinel://sentinel:26379/mymaster")
    assert isinstance(parsed, SentinelUrl)
    assert parsed.tls is True
    assert parsed.db == 0


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("localhost:6379", "no scheme"),
        ("http://redis:6379", "scheme http:// is not supported"),
        ("redis+sentinel://:pw@sentinel:26379", "names no Sentinel service"),
        ("redis+sentinel://:pw@/mymaster", "names no Sentinel host"),
        ("redis+sentinel://:pw@sentinel:port/mymaster", "invalid Sentinel port"),
        ("redis+sentinel://:pw@sentinel:26379/mymaster/zero", "database must be a number"),
        ("redis://redis:port/0", "invalid port"),
    ],
    ids=["no-scheme", "http", "no-service", "no-host", "bad-port", "bad-db", "bad-plain-port"],
)
def test_malformed_url_says_what_is_wrong_and_the_expected_form(url: str, problem: str) -> None:
    with pytest.raises(RedisUrlError) as error:
        parse_redis_url(url)

    assert problem in str(error.value)
    assert "redis+sentinel://[:password@]host:26379,host2:26379/mymaster[/db]" in str(error.value)
    assert "pw" not in str(error.value).replace("password", "")


def test_rollbot_serve_refuses_a_malformed_redis_url_in_plain_words() -> None:
    settings = Settings(redis_url="redis+sentinel://:pw@sentinel:26379", retention="0s")

    problems = settings.serve_problems()

    assert any(p.startswith("REDIS_URL names no Sentinel service") for p in problems)
    assert "ROLLBOT_RETENTION must be positive, e.g. 30d or 12h" in problems


def test_retention_and_audit_cap_read_like_the_other_durations() -> None:
    settings = Settings(retention="12h", audit_max=5000)
    assert settings.retention.total_seconds() == 12 * 3600
    assert settings.audit_max == 5000
    assert Settings().retention.days == 30
