"""Configuration: file defaults, environment overrides, clear errors for bad values."""
import ipaddress

import pytest

from amoiq_chat.settings import ConfigError, RateLimit, ensure_jwt_secret, load_settings


def test_defaults_come_from_the_config_file():
    settings = load_settings(env={})
    assert (settings.host, settings.port) == ("127.0.0.1", 5000)
    assert settings.rate_limit_http == RateLimit(100, 60)
    assert settings.rate_limit_auth == RateLimit(10, 60)
    assert settings.embedded


def test_environment_overrides_the_file():
    settings = load_settings(env={"PORT": "8080", "RATE_LIMIT_WS": "5/2", "CORS_ORIGINS": "https://a.example, https://b.example",
                                  "WEBHOOK_ALLOW_PRIVATE": "1", "LOG_LEVEL": "debug", "WRITER_LINGER_MS": "2"})
    assert settings.port == 8080
    assert settings.rate_limit_ws == RateLimit(5, 2)
    assert settings.cors_origins == ("https://a.example", "https://b.example")
    assert settings.webhook_allow_private is True
    assert settings.log_level == "DEBUG"
    assert settings.writer_linger_ms == 2


def test_logging_and_metrics_settings():
    assert load_settings(env={}).metrics_networks == (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
    settings = load_settings(env={"LOG_FORMAT": "JSON", "METRICS_NETWORKS": "10.1.0.0/16, 192.168.1.7",
                                  "METRICS_TOKEN": "scrape-me"})
    assert settings.log_format == "json" and settings.metrics_token == "scrape-me"
    assert settings.metrics_networks == (ipaddress.ip_network("10.1.0.0/16"), ipaddress.ip_network("192.168.1.7/32"))


@pytest.mark.parametrize("env, named", [
    ({"PORT": "eighty"}, "PORT"),
    ({"PORT": "70000"}, "PORT"),
    ({"RATE_LIMIT_HTTP": "100"}, "RATE_LIMIT_HTTP"),
    ({"RATE_LIMIT_HTTP": "0/60"}, "RATE_LIMIT_HTTP"),
    ({"WEBHOOK_ALLOW_PRIVATE": "maybe"}, "WEBHOOK_ALLOW_PRIVATE"),
    ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
    ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
    ({"METRICS_NETWORKS": "10.0.0.0/8,intranet"}, "METRICS_NETWORKS"),
    ({"WRITER_LINGER_MS": "51"}, "WRITER_LINGER_MS"),
    ({"WRITER_LINGER_MS": "-1"}, "WRITER_LINGER_MS"),
    ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
    ({"REDIS_POOL_MAX": "2", "WRITER_SHARDS": "2"}, "REDIS_POOL_MAX"),
    ({"JWT_SECRET": "short"}, "JWT_SECRET"),
    ({"ENVIRONMENT": "production"}, "JWT_SECRET"),
    ({"ENVIRONMENT": "production", "JWT_SECRET": "s" * 40}, "DATABASE_URL"),
    ({"WEBHOOK_RETRY_SCHEDULE": "5,soon"}, "WEBHOOK_RETRY_SCHEDULE"),
    ({"WEBHOOK_RETRY_SCHEDULE": "5,-1"}, "WEBHOOK_RETRY_SCHEDULE"),
    ({"WEBHOOK_TIMEOUT": "0"}, "WEBHOOK_TIMEOUT"),
    ({"WEBHOOK_TIMEOUT": "inf"}, "WEBHOOK_TIMEOUT"),
    ({"WEBHOOK_CLAIM_IDLE": "10", "WEBHOOK_TIMEOUT": "15"}, "WEBHOOK_CLAIM_IDLE"),
    ({"WEBHOOK_CONCURRENCY": "0"}, "WEBHOOK_CONCURRENCY"),
    ({"WEBHOOK_URL": "https://hooks.example.com/in"}, "WEBHOOK_SECRET"),
])
def test_bad_values_are_refused_naming_the_setting(env, named):
    with pytest.raises(ConfigError, match=named):
        load_settings(env=env)


def test_unknown_key_in_a_config_file_is_refused(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('prot = 5000\n')
    with pytest.raises(ConfigError, match="unknown setting.*prot"):
        load_settings(env={"AMOIQ_CONFIG": str(path)})


def test_development_secret_is_generated_once_and_kept(tmp_path):
    settings = load_settings(env={}, var_dir=str(tmp_path))
    first = ensure_jwt_secret(settings)
    second = ensure_jwt_secret(settings)
    assert len(first.jwt_secret) == 64
    assert first.jwt_secret == second.jwt_secret == (tmp_path / "jwt_secret").read_text()
    assert (tmp_path / "jwt_secret").stat().st_mode & 0o077 == 0


def test_webhook_timings_take_fractions_of_a_second():
    settings = load_settings(env={"WEBHOOK_RETRY_SCHEDULE": "0.1, 0.3", "WEBHOOK_TIMEOUT": "0.5",
                                  "WEBHOOK_CLAIM_IDLE": "1.5", "WEBHOOK_MAX_ATTEMPTS": "2"})
    assert settings.webhook_retry_schedule == (0.1, 0.3)
    assert (settings.webhook_timeout, settings.webhook_claim_idle) == (0.5, 1.5)
    assert settings.webhook_attempts == 2
