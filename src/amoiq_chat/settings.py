"""Settings: `config/amoiq-chat.toml` defaults, overridden by environment variables."""
from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = ROOT / "config" / "amoiq-chat.toml"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


class ConfigError(Exception):
    """A configuration value that cannot be used; the message names it."""


@dataclass(frozen=True)
class RateLimit:
    """`count` events per `seconds`."""

    count: int
    seconds: int

    @classmethod
    def parse(cls, name: str, text: str) -> "RateLimit":
        """Parse "100/60"."""
        try:
            count, seconds = (int(part) for part in str(text).split("/"))
        except ValueError:
            raise ConfigError(f"{name.upper()} must look like 100/60 (requests/seconds), got {text!r}") from None
        if count < 1 or seconds < 1:
            raise ConfigError(f"{name.upper()} must have positive numbers, got {text!r}")
        return cls(count, seconds)


@dataclass(frozen=True)
class Settings:
    """Validated configuration of one server process."""

    host: str = "127.0.0.1"
    port: int = 5000
    environment: str = "development"
    database_url: str = ""
    redis_url: str = ""
    var_dir: str = "var"
    db_pool_min: int = 2
    db_pool_max: int = 10
    redis_pool_max: int = 50
    writer_shards: int = 1
    writer_linger_ms: int = 1
    writer_queue: int = 10000
    writer_batch: int = 500
    presence_ttl: int = 15
    ws_heartbeat: float = 25.0
    ws_send_buffer: int = 4 * 1024 * 1024
    ws_send_queue: int = 1024
    jwt_secret: str = ""
    jwt_issuer: str = "amoiq-chat"
    jwt_audience: str = "amoiq-chat"
    admin_token_ttl: int = 604800
    visitor_token_ttl: int = 3600
    rate_limit_http: RateLimit = RateLimit(100, 60)
    rate_limit_auth: RateLimit = RateLimit(10, 60)
    rate_limit_ws: RateLimit = RateLimit(10, 1)
    trusted_proxies: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = 1048576
    max_frame_bytes: int = 65536
    max_connections_per_address: int = 256
    header_timeout: int = 5
    max_header_bytes: int = 32768
    webhook_url: str = ""
    webhook_secret: str = ""
    webhook_allow_private: bool = False
    webhook_delivery: bool = True
    webhook_retry_schedule: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
    webhook_max_attempts: int = 0
    webhook_timeout: float = 15.0
    webhook_concurrency: int = 64
    webhook_claim_idle: float = 60.0
    webhook_reconcile_after: float = 120.0
    webhook_rotation_overlap: int = 86400
    webhook_disable_after: int = 86400
    bot_enabled: bool = True
    bot_llm_url: str = ""
    bot_llm_model: str = ""
    bot_llm_api_key: str = ""
    bot_llm_timeout: int = 10
    ai_reply_concurrency: int = 32
    queue_refresh: int = 5
    queue_step: float = 1.0
    log_level: str = "INFO"
    log_format: str = "text"
    metrics_token: str = ""
    metrics_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = LOOPBACK
    seed_demo: bool = True
    # Not from the file: set by the caller (tests, embedded start-up).

    @property
    def embedded(self) -> bool:
        """True when the embedded PostgreSQL/Redis are needed."""
        return not (self.database_url and self.redis_url)

    @property
    def var_path(self) -> Path:
        """The folder for embedded data and the generated JWT secret."""
        path = Path(self.var_dir)
        return path if path.is_absolute() else ROOT / path

    @property
    def webhook_attempts(self) -> int:
        """How many delivery attempts a webhook job gets in all."""
        attempts = 1 + len(self.webhook_retry_schedule)
        if self.webhook_max_attempts:
            attempts = min(attempts, self.webhook_max_attempts)
        return attempts

    def replace(self, **changes: Any) -> "Settings":
        """Return a copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def _to_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name.upper()} must be a boolean (1/0, true/false), got {value!r}")


def _to_int(name: str, value: Any, minimum: int = 0, maximum: int | None = None) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name.upper()} must be a whole number, got {value!r}") from None
    if number < minimum or (maximum is not None and number > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise ConfigError(f"{name.upper()} must be {bound}, got {number}")
    return number


def _to_seconds(name: str, value: Any, minimum: float = 0.0) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name.upper()} must be a number of seconds, got {value!r}") from None
    if not number >= minimum or number == float("inf"):
        raise ConfigError(f"{name.upper()} must be a finite number of seconds, at least {minimum}, got {value!r}")
    return number


def _to_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, (list, tuple)):
        return tuple(str(v).strip() for v in value if str(v).strip())
    return tuple(part.strip() for part in str(value).split(",") if part.strip())


def _convert(name: str, value: Any) -> Any:
    """Turn a raw file/environment value into the field's type, or raise ConfigError."""
    if name == "port":
        return _to_int(name, value, 0, 65535)
    if name in ("webhook_timeout", "webhook_claim_idle", "webhook_reconcile_after"):
        return _to_seconds(name, value, 0.05)
    if name in ("admin_token_ttl", "visitor_token_ttl", "webhook_concurrency", "db_pool_max", "redis_pool_max",
                "writer_shards", "max_body_bytes", "max_frame_bytes", "max_connections_per_address", "writer_queue",
                "writer_batch", "ws_send_buffer", "ws_send_queue"):
        return _to_int(name, value, 1)
    if name == "header_timeout":
        return _to_int(name, value, 1, 300)
    if name == "max_header_bytes":
        return _to_int(name, value, 1024)
    if name in ("db_pool_min", "webhook_max_attempts", "webhook_rotation_overlap", "webhook_disable_after"):
        return _to_int(name, value, 0)
    if name == "presence_ttl":
        return _to_int(name, value, 3)
    if name == "ws_heartbeat":
        return _to_seconds(name, value, 0.05)
    if name == "bot_llm_timeout":
        return _to_int(name, value, 1, 120)
    if name == "ai_reply_concurrency":
        return _to_int(name, value, 1, 10000)
    if name == "queue_step":
        return _to_seconds(name, value, 0.01)
    if name == "queue_refresh":
        return _to_int(name, value, 1, 60)
    if name == "writer_linger_ms":
        return _to_int(name, value, 0, 50)
    if name.startswith("rate_limit_"):
        return RateLimit.parse(name, value)
    if name in ("trusted_proxies", "cors_origins"):
        return _to_list(value)
    if name == "webhook_retry_schedule":
        return tuple(_to_seconds(name, part) for part in _to_list(value))
    if name in ("webhook_allow_private", "webhook_delivery", "seed_demo", "bot_enabled"):
        return _to_bool(name, value)
    if name == "log_level":
        level = str(value).upper()
        if level not in LOG_LEVELS:
            raise ConfigError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {value!r}")
        return level
    if name == "log_format":
        if str(value).lower() not in LOG_FORMATS:
            raise ConfigError(f"LOG_FORMAT must be text or json, got {value!r}")
        return str(value).lower()
    if name == "metrics_networks":
        try:
            return tuple(ipaddress.ip_network(part, strict=False) for part in _to_list(value))
        except ValueError as exc:
            raise ConfigError(f"METRICS_NETWORKS must be comma-separated networks like 10.0.0.0/8: {exc}") from None
    if name == "environment":
        if value not in ("development", "production"):
            raise ConfigError(f"ENVIRONMENT must be development or production, got {value!r}")
        return value
    if name in ("database_url", "redis_url"):
        text = str(value).strip()
        schemes = ("postgresql://", "postgres://") if name == "database_url" else ("redis://", "rediss://", "unix://")
        if text and not text.startswith(schemes):
            raise ConfigError(f"{name.upper()} must start with {' or '.join(schemes)}, got {text!r}")
        return text
    return str(value)


FIELDS = tuple(f.name for f in dataclasses.fields(Settings))


def load_settings(env: Mapping[str, str] | None = None, config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Read the config file, apply environment overrides and keyword overrides, validate."""
    env = os.environ if env is None else env
    path = Path(config_file or env.get("AMOIQ_CONFIG") or DEFAULT_CONFIG)
    try:
        raw: dict[str, Any] = tomllib.loads(path.read_text()) if path.exists() else {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    unknown = set(raw) - set(FIELDS)
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))}")
    for name in FIELDS:
        if name.upper() in env:
            raw[name] = env[name.upper()]
    raw.update(overrides)
    values = {name: _convert(name, value) for name, value in raw.items() if name in FIELDS}
    settings = Settings(**values)
    if settings.db_pool_min > settings.db_pool_max:
        raise ConfigError("DB_POOL_MIN must not exceed DB_POOL_MAX")
    if settings.redis_pool_max <= settings.writer_shards:
        raise ConfigError("REDIS_POOL_MAX must be larger than WRITER_SHARDS (each message writer keeps one of its "
                          "connections)")
    if settings.webhook_claim_idle <= settings.webhook_timeout:
        raise ConfigError("WEBHOOK_CLAIM_IDLE must be longer than WEBHOOK_TIMEOUT (a job in flight that long is taken "
                          "for abandoned and delivered by another process)")
    if settings.webhook_url and not settings.webhook_secret:
        raise ConfigError("WEBHOOK_SECRET must be set with WEBHOOK_URL (every webhook is signed)")
    if settings.environment == "production":
        if not settings.jwt_secret:
            raise ConfigError("JWT_SECRET must be set in production (at least 32 characters)")
        if settings.embedded:
            raise ConfigError("DATABASE_URL and REDIS_URL must be set in production")
    if settings.jwt_secret and len(settings.jwt_secret) < 32:
        raise ConfigError("JWT_SECRET must be at least 32 characters")
    return settings


def ensure_jwt_secret(settings: Settings) -> Settings:
    """Return settings with a JWT secret: the configured one, or one generated once under var/."""
    if settings.jwt_secret:
        return settings
    path = settings.var_path / "jwt_secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(os.urandom(32).hex())
    return settings.replace(jwt_secret=path.read_text().strip())


def with_database(url: str, name: str) -> str:
    """The same PostgreSQL server URL with another database name."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def with_redis_db(url: str, number: int) -> str:
    """The same Redis URL (redis:// or unix://) with another database number."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = dict(parse_qsl(parts.query))
        query["db"] = str(number)
        return f"unix://{parts.path}?{urlencode(query)}"
    return urlunsplit(parts._replace(path=f"/{number}"))
