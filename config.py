"""Configuration from the environment (12-factor).

Development generates a SECRET_KEY and an encryption key once into `instance/`
so a first run needs nothing; production refuses to start without them.
"""
import os
import secrets
import warnings
from pathlib import Path

from cryptography.fernet import Fernet

BASE_DIR = Path(__file__).resolve().parent
INSTANCE_DIR = Path(os.environ.get("INSTANCE_PATH", BASE_DIR / "instance"))

PROVIDER_API_BASES = {
    "SENDGRID_API_BASE": "https://api.sendgrid.com",
    "MAILGUN_API_BASE": "https://api.mailgun.net",
    "MAILGUN_EU_API_BASE": "https://api.eu.mailgun.net",
    "MANDRILL_API_BASE": "https://mandrillapp.com/api/1.0",
    "TWILIO_API_BASE": "https://api.twilio.com",
    "VONAGE_API_BASE": "https://rest.nexmo.com",
    "PLIVO_API_BASE": "https://api.plivo.com",
    "META_GRAPH_API_BASE": "https://graph.facebook.com",
}


def _flag(name: str, default: str = "0") -> bool:
    return os.environ.get(name, default).strip().lower() in {"1", "true", "yes", "on"}


def database_url(raw: str | None) -> str:
    """Default to SQLite in instance/; use psycopg 3 for PostgreSQL URLs."""
    if not raw:
        return f"sqlite:///{INSTANCE_DIR / 'switchboard.db'}"
    for prefix in ("postgres://", "postgresql://"):
        if raw.startswith(prefix):
            return "postgresql+psycopg://" + raw[len(prefix):]
    return raw


def _instance_secret(filename: str, make) -> str:
    """Read a development secret from instance/, creating it the first time."""
    path = INSTANCE_DIR / filename
    if path.exists():
        return path.read_text().strip()
    INSTANCE_DIR.mkdir(parents=True, exist_ok=True)
    value = make()
    path.write_text(value + "\n")
    path.chmod(0o600)
    warnings.warn(f"{filename} was not set; generated one into {path} (development only)", stacklevel=2)
    return value


class Config:
    APP_ENV = os.environ.get("APP_ENV", "development")
    SECRET_KEY = os.environ.get("SECRET_KEY")
    ENCRYPTION_KEYS = os.environ.get("ENCRYPTION_KEYS")
    SQLALCHEMY_DATABASE_URI = database_url(os.environ.get("DATABASE_URL"))
    REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    RQ_QUEUE = os.environ.get("RQ_QUEUE", "switchboard")
    PUBLIC_BASE_URL = os.environ.get("PUBLIC_BASE_URL", "http://127.0.0.1:5000").rstrip("/")
    ALLOW_PRIVATE_NETWORK = _flag("ALLOW_PRIVATE_NETWORK")
    AWS_ENDPOINT_URL = os.environ.get("AWS_ENDPOINT_URL") or None
    META_API_VERSION = os.environ.get("META_API_VERSION", "v25.0")
    # Where "Connect with Meta" sends the browser: Meta's Login dialog for the pinned Graph version.
    META_OAUTH_DIALOG_URL = (os.environ.get("META_OAUTH_DIALOG_URL")
                             or f"https://www.facebook.com/{META_API_VERSION}/dialog/oauth").rstrip("/")
    PROVIDER_TIMEOUT_SECONDS = float(os.environ.get("PROVIDER_TIMEOUT_SECONDS", "10"))
    # Inbox media: a folder under instance/ by default, or s3://bucket/prefix (see app/storage.py).
    MEDIA_STORAGE_URL = os.environ.get("MEDIA_STORAGE_URL", "")
    MEDIA_MAX_BYTES = int(os.environ.get("MEDIA_MAX_BYTES", str(25 * 1000 * 1000)))
    SHARED_MEDIA_SECONDS = int(os.environ.get("SHARED_MEDIA_SECONDS", str(24 * 3600)))  # links Meta fetches

    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = PUBLIC_BASE_URL.startswith("https://")
    REMEMBER_COOKIE_HTTPONLY = True
    REMEMBER_COOKIE_SAMESITE = "Lax"
    MAX_CONTENT_LENGTH = 1024 * 1024
    WTF_CSRF_TIME_LIMIT = None
    LOGIN_RATE_LIMIT = os.environ.get("LOGIN_RATE_LIMIT", "10 per minute")
    SIGNUP_RATE_LIMIT = os.environ.get("SIGNUP_RATE_LIMIT", "20 per minute")  # sign-up posts per client IP
    SIGNUP_MIN_FILL_SECONDS = float(os.environ.get("SIGNUP_MIN_FILL_SECONDS", "3"))  # faster is a bot
    # Reverse proxies in front of the app whose X-Forwarded-For/-Proto/-Host are believed (0: none, so a
    # client cannot pick the IP it is rate-limited and recorded by)
    TRUSTED_PROXIES = int(os.environ.get("TRUSTED_PROXIES", "0"))
    RATELIMIT_HEADERS_ENABLED = True
    LOGS_PER_PAGE = 50
    # Deliberately slow; the test suite, which makes hundreds of users, sets a fast one.
    PASSWORD_HASH_METHOD = "scrypt"

    @classmethod
    def finalise(cls, values: dict) -> dict:
        """Fill development secrets, refuse missing ones in production."""
        missing = [name for name in ("SECRET_KEY", "ENCRYPTION_KEYS") if not values.get(name)]
        if missing and values.get("APP_ENV") == "production":
            raise RuntimeError(f"Refusing to start in production without {', '.join(missing)}")
        if not values.get("SECRET_KEY"):
            values["SECRET_KEY"] = _instance_secret("secret_key", lambda: secrets.token_urlsafe(48))
        if not values.get("ENCRYPTION_KEYS"):
            values["ENCRYPTION_KEYS"] = _instance_secret("encryption_keys", lambda: Fernet.generate_key().decode())
        values["RATELIMIT_STORAGE_URI"] = values.get("RATELIMIT_STORAGE_URI") or values["REDIS_URL"]
        return values


for _name, _default in PROVIDER_API_BASES.items():
    setattr(Config, _name, os.environ.get(_name, _default).rstrip("/"))
