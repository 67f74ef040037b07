"""Settings for PrivacyOps, driven entirely by environment variables.

Every variable read here is listed, with a comment, in `.env.example`. Two running modes follow from
them: embedded (no DATABASE_URL / REDIS_URL: a SQLite file and a filesystem broker, so a machine with
only Python runs the whole system) and production (PostgreSQL and Redis).
"""

import datetime
import os
from pathlib import Path
from zoneinfo import ZoneInfo

import environ
from celery.schedules import crontab
from kombu import Queue

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
if DEBUG:
    SECRET_KEY = env.str("SECRET_KEY", default="insecure-development-key-do-not-use-in-production")
else:
    # No default: a production process must never run on a key that is in the repository.
    SECRET_KEY = env.str("SECRET_KEY")

# Key of the HMAC that pseudonymises personal fields (stable per subject). A pseudonym made with it is still
# personal data: whoever holds the key can link it back. Kept apart from SECRET_KEY so rotating that one
# (which signs everybody out) does not change every pseudonym in the de-identified datasets.
# No production default, as for SECRET_KEY: a pseudonym keyed with a value from the repository is none.
PSEUDONYM_KEY = env.str("PSEUDONYM_KEY", default="insecure-development-pseudonym-key" if DEBUG else env.NOTSET)

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "import_export",
    "django_celery_beat",
    "pgtrigger",
    "django_otp",
    "django_otp.plugins.otp_email",
    "privacyops.apps.PrivacyOpsConfig",
    "accounts.apps.AccountsConfig",
    "inventory.apps.InventoryConfig",
    "chat.apps.ChatConfig",
    "retention.apps.RetentionConfig",
    "policies.apps.PoliciesConfig",
    "consents.apps.ConsentsConfig",
    "training.apps.TrainingConfig",
    "requests.apps.RequestsConfig",
]

MIDDLEWARE = [
    # Outermost, so it sees every Set-Cookie (session, CSRF) on the way out: no non-essential cookie leaves
    # without consent, and nothing at all on a first anonymous visit (PM-III-6).
    "consents.cookies.middleware.CookieConsentMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Use after a policy version's effective date is recorded as acceptance (PM-X-3).
    "policies.middleware.PolicyAcceptanceMiddleware",
]

ROOT_URLCONF = "privacyops.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "privacyops" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "privacyops.context_processors.controller",
                "consents.cookies.context_processors.cookie_consent",
                "policies.middleware.policy_notice",
            ],
        },
    },
]

WSGI_APPLICATION = "privacyops.wsgi.application"

# --- Database -------------------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'privacyops.sqlite3'}")}
DATABASES["default"].setdefault("ATOMIC_REQUESTS", False)
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Embedded mode runs web, worker and beat against one file: WAL lets readers run beside the one
    # writer, the busy timeout makes a second writer wait instead of failing, and IMMEDIATE takes the
    # write lock at BEGIN so two transactions never deadlock upgrading a read lock.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=20000;",
    }
    # The test database is a file (a real worker process can open it), one per test run so that
    # concurrent runs never share it.
    DATABASES["default"].setdefault("TEST", {})
    DATABASES["default"]["TEST"].setdefault("NAME", str(VAR_DIR / f"test-{os.getpid()}.sqlite3"))

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"
# Subjects sign in on the public side; the workbench keeps the admin's own sign-in page.
LOGIN_URL = "web:signin"
LOGIN_REDIRECT_URL = "web:my-consents"
LOGOUT_REDIRECT_URL = "web:overview"
# Flash messages live in the session: a `messages` cookie is not in the cookie inventory.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Cache and broker -----------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Time -----------------------------------------------------------------------------------------
LANGUAGE_CODE = "en"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True
# Legal deadlines (requests.deadlines) count calendar dates and end at midnight in this zone: where the
# controller answers from (Singapore). It is also as far east as the regimes we serve reach (SG, CN; ID's
# periods are in hours), so a due day ends no later than it does for the subject. Storage stays in UTC.
DEADLINE_TIME_ZONE = env.str("DEADLINE_TIME_ZONE", default="Asia/Singapore")
ZoneInfo(DEADLINE_TIME_ZONE)  # an unknown zone fails at start-up, not at the first request's clock

STATIC_URL = "static/"
STATIC_ROOT = env.str("STATIC_ROOT", default=str(VAR_DIR / "static"))
MEDIA_URL = "media/"
MEDIA_ROOT = env.str("MEDIA_ROOT", default=str(VAR_DIR / "media"))

# --- Email ----------------------------------------------------------------------------------------
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="privacyops@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- The controller's identity (PM-XI-1), used in documents, emails and the Art. 30 record -----------
CONTROLLER_NAME = env.str("CONTROLLER_NAME", default="Alibaba Cloud (Singapore) Private Limited")
CONTROLLER_REPRESENTATIVE = env.str("CONTROLLER_REPRESENTATIVE", default="")
CONTROLLER_REPRESENTATIVE_CONTACT = env.str("CONTROLLER_REPRESENTATIVE_CONTACT", default="")
# The controller's own contact details (GDPR Art. 30(1)(a); the Kantara receipt's piiControllers), read
# through inventory.ropa.controller_details(). The policy gives one postal address (care of the Hong Kong
# office) and one e-mail address, and no telephone number.
CONTROLLER_ADDRESS = env.str(
    "CONTROLLER_ADDRESS", default="c/o 26/F, Tower One, Times Square, 1 Matheson Street, Causeway Bay, Hong Kong"
)
CONTROLLER_ADDRESS_COUNTRY = env.str("CONTROLLER_ADDRESS_COUNTRY", default="HK")
CONTROLLER_EMAIL = env.str("CONTROLLER_EMAIL", default="DPO_qwenlm-intl@service.alibaba.com")
CONTROLLER_PHONE = env.str("CONTROLLER_PHONE", default="")
CONTROLLER_COUNTRY = env.str("CONTROLLER_COUNTRY", default="SG")
DPO_NAME = env.str("DPO_NAME", default="Data Protection Officer")
DPO_EMAIL = env.str("DPO_EMAIL", default="DPO_qwenlm-intl@service.alibaba.com")
DPO_POSTAL_ADDRESS = env.str(
    "DPO_POSTAL_ADDRESS",
    default=(
        "Data Protection Officer, Alibaba Cloud (Singapore) Private Limited, c/o 26/F, Tower One, "
        "Times Square, 1 Matheson Street, Causeway Bay, Hong Kong"
    ),
)
SECURITY_MEASURES = env.str(
    "SECURITY_MEASURES",
    default=(
        "Encryption of personal data in transit (TLS, HSTS) and at rest; an information security "
        "programme following an industry framework; malware protection; vulnerability management; "
        "least-privilege staff roles with two-factor sign-in; a hash-chained, append-only audit trail "
        "of staff actions on personal data; backups and recovery procedures."
    ),
)

# --- Security (PM-VII-1, PM-VII-2) ----------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
if not DEBUG:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    # Behind a TLS-terminating proxy, set this so Django knows the request was HTTPS.
    if env.bool("SECURE_PROXY_SSL_HEADER", default=False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Celery ---------------------------------------------------------------------------------------
CELERY_BROKER_URL = REDIS_URL or "filesystem://"
CELERY_BROKER_TRANSPORT_OPTIONS = (
    # Redis redelivers unacknowledged messages after this long; it must exceed the longest task.
    {"visibility_timeout": 4 * 3600}
    if REDIS_URL
    else {
        "data_folder_in": str(VAR_DIR / "broker" / "queue"),
        "data_folder_out": str(VAR_DIR / "broker" / "queue"),
        "processed_folder": str(VAR_DIR / "broker" / "processed"),
        "control_folder": str(VAR_DIR / "broker" / "control"),
        "store_processed": False,
    }
)
CELERY_RESULT_BACKEND = None  # results are written to our own tables, never to a shadow store
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=3600)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=3300)
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_QUEUES = (Queue("default"), Queue("exports"), Queue("purges"))
# Queues are chosen here, not on the task decorator (Celery 5.7 deprecates the task `queue` attribute).
# Export packages go to `exports`, retention purges and erasures to `purges`, everything else to `default`.
CELERY_TASK_ROUTES = {
    "requests.tasks.export_*": {"queue": "exports"},
    "retention.tasks.*": {"queue": "purges"},
    "requests.tasks.erasure_*": {"queue": "purges"},
    # The model-improvement dataset is a long file-writing job, like an export package.
    "training.tasks.training_dataset_build": {"queue": "exports"},
}
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Tests and a fresh machine run tasks in-process; integration tests turn this off to use a worker.
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_EAGER_PROPAGATES = True

# Every periodic task lives here, in code; `manage.py sync_schedules` writes them to the beat tables.
# name -> (task, schedule, options)
PERIODIC_TASKS = {
    "audit: anchor the head hash": {
        "task": "privacyops.tasks.audit_anchor_head",
        "schedule": crontab(minute=5, hour=0),
        "options": {"queue": "default"},
    },
    "retention: run the enabled rules": {
        "task": "retention.tasks.due_rules_run",
        "schedule": crontab(minute=30, hour=2),
        "options": {"queue": "purges"},
    },
    "consents: expire consents past their lifetime": {
        "task": "consents.tasks.due_consents_expire",
        "schedule": crontab(minute=15, hour=3),
        "options": {"queue": "default"},
    },
    "consents: send policy-change notices": {
        "task": "policies.tasks.policy_notice_batches_send",
        "schedule": crontab(minute="*/10"),
        "options": {"queue": "default"},
    },
    "requests: deadline reminders to staff": {
        "task": "requests.tasks.deadline_reminders_send",
        "schedule": crontab(minute=0),  # hourly: Indonesia's 3x24-hour periods pass a mark every few hours
        "options": {"queue": "default"},
    },
    "requests: delete expired export packages": {
        "task": "requests.tasks.export_packages_expire",
        "schedule": crontab(minute=20),
        "options": {"queue": "exports"},
    },
    "requests: close unverified requests": {
        "task": "requests.tasks.unverified_requests_close",
        "schedule": crontab(minute=40, hour=3),
        "options": {"queue": "default"},
    },
    "requests: resume fulfilment jobs whose worker stopped": {
        "task": "requests.tasks.stalled_jobs_resume",
        "schedule": crontab(minute="*/2"),
        "options": {"queue": "default"},
    },
    "retention: resume runs whose worker stopped": {
        "task": "retention.tasks.stalled_runs_resume",
        "schedule": crontab(),  # every minute: resuming is driven by the database, not by broker redelivery
        "options": {"queue": "purges"},
    },
}

# --- Retention purges -------------------------------------------------------------------------------
# Rows per batch (one transaction each), how long a worker's lease on a run lasts without a heartbeat,
# and how long one task works before it queues its own continuation (keeps tasks far below the time limits
# and the Redis visibility timeout).
RETENTION_BATCH_SIZE = env.int("RETENTION_BATCH_SIZE", default=5000)
RETENTION_LEASE_SECONDS = env.int("RETENTION_LEASE_SECONDS", default=120)
RETENTION_TASK_SECONDS = env.int("RETENTION_TASK_SECONDS", default=60)

# --- Consents, cookies and policy versions ----------------------------------------------------------
# Where the published privacy policy lives (consent receipts and notices link to it).
POLICY_URL = env.str("POLICY_URL", default="https://chat.qwen.ai/legal-agreement/privacy-policy")
# Sign-up refuses anyone younger (PM-VIII-1: the service is not for under-18s).
SIGNUP_MINIMUM_AGE = env.int("SIGNUP_MINIMUM_AGE", default=18)
# A policy version taking effect sooner than this many days after publication needs a recorded reason.
POLICY_NOTICE_DAYS = env.int("POLICY_NOTICE_DAYS", default=30)
# Accounts e-mailed per batch (one transaction each) when a policy version is published.
POLICY_NOTICE_BATCH_SIZE = env.int("POLICY_NOTICE_BATCH_SIZE", default=500)
# How long a cached answer of the consent check lives; a change invalidates it at once anyway.
CONSENT_CACHE_SECONDS = env.int("CONSENT_CACHE_SECONDS", default=300)
# The largest JSON body the API reads (413 beyond it; docs/consent-api.md states it to clients).
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=1024 * 1024)
# A consent recorded by a client may carry an effective time at most this far ahead of our clock.
CONSENT_CLOCK_SKEW = datetime.timedelta(seconds=60)
# The one cookie that remembers the banner choice (necessary, PM-III-2), and how long it lasts.
CONSENT_COOKIE_NAME = "privacyops_choice"
CONSENT_COOKIE_AGE = datetime.timedelta(days=365)

# --- Rights requests --------------------------------------------------------------------------------
# The site's own address, for links in e-mails (verification, status, package ready), which are sent
# outside any HTTP request. Default: the development server, or https:// and the first allowed host.
SITE_URL = env.str(
    "SITE_URL",
    default="http://127.0.0.1:8000"
    if DEBUG
    else "https://" + next((host.lstrip(".") for host in ALLOWED_HOSTS if host != "*"), "localhost"),
).rstrip("/")
# The one-time code e-mailed to re-authenticate an account that signs in with Google or GitHub.
OTP_EMAIL_SUBJECT = "Your confirmation code"
OTP_EMAIL_BODY_TEMPLATE_PATH = "accounts/reauth_code.txt"
# A verification link (requests without a signed-in session) works this many days, once; a request still
# unverified after REQUEST_UNVERIFIED_CLOSE_DAYS closes itself, and the requester is told.
REQUEST_VERIFICATION_DAYS = env.int("REQUEST_VERIFICATION_DAYS", default=7)
REQUEST_UNVERIFIED_CLOSE_DAYS = env.int("REQUEST_UNVERIFIED_CLOSE_DAYS", default=14)
# Public intake forms (requests without an account, reports of a child's account): per client address.
REQUEST_INTAKE_PER_HOUR = env.int("REQUEST_INTAKE_PER_HOUR", default=5)
# Access and portability packages: kept this many days, downloadable at most 5 times (a database
# constraint), each download through a single-use link valid EXPORT_LINK_MINUTES.
EXPORT_PACKAGE_DAYS = env.int("EXPORT_PACKAGE_DAYS", default=7)
EXPORT_LINK_MINUTES = env.int("EXPORT_LINK_MINUTES", default=60)
# The key packages are encrypted with at rest (urlsafe base64 of 32 random bytes:
# `python -c "import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())"`). Required
# with DEBUG off; rotating it makes packages already built unreadable (they live a week).
EXPORT_ENCRYPTION_KEY = env.str(
    "EXPORT_ENCRYPTION_KEY", default="ZGV2ZWxvcG1lbnQta2V5LW5vdC1wcm9kdWN0aW9uISE=" if DEBUG else env.NOTSET
)
# Every erasure is also appended here, outside the database, so that `manage.py dsr replay-erasures`
# can apply it again after a restore from a backup older than the erasure. Keep it on separate storage.
ERASURE_LOG_PATH = env.str("ERASURE_LOG_PATH", default=str(VAR_DIR / "erasure-log.jsonl"))
# Rows per erasure batch (one transaction each, with the job's position and lease renewal).
ERASURE_BATCH_SIZE = env.int("ERASURE_BATCH_SIZE", default=2000)
# Fulfilment jobs (exports, erasures) hold an owned lease on their request (privacyops.leases): it lasts
# REQUEST_JOB_LEASE_SECONDS from its last renewal; a build renews it at most every
# REQUEST_JOB_HEARTBEAT_SECONDS (per table and per megabyte written), an erasure with every batch. A job
# whose lease ran out is queued again by `stalled_jobs_resume` and its worker, should it still run, stops.
REQUEST_JOB_LEASE_SECONDS = env.int("REQUEST_JOB_LEASE_SECONDS", default=120)
REQUEST_JOB_HEARTBEAT_SECONDS = env.float("REQUEST_JOB_HEARTBEAT_SECONDS", default=15)

# --- django-import-export -------------------------------------------------------------------------
# Its defaults let every staff user import and export and leave formulae live in spreadsheets.
IMPORT_EXPORT_IMPORT_PERMISSION_CODE = "import"
IMPORT_EXPORT_EXPORT_PERMISSION_CODE = "export"
IMPORT_EXPORT_ESCAPE_FORMULAE_ON_EXPORT = True
IMPORT_EXPORT_USE_TRANSACTIONS = True
IMPORT_EXPORT_SKIP_ADMIN_LOG = False
IMPORT_EXPORT_TMP_STORAGE_CLASS = "import_export.tmp_storages.CacheStorage"

# --- Audit anchoring ------------------------------------------------------------------------------
AUDIT_ANCHOR_LOG = env.str("AUDIT_ANCHOR_LOG", default=str(VAR_DIR / "audit-anchors.log"))
# An audit action missing from every app's audit_actions.py is refused (on) or logged and recorded (off).
AUDIT_ACTIONS_STRICT = env.bool("AUDIT_ACTIONS_STRICT", default=DEBUG)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

VAR_DIR.mkdir(exist_ok=True)
if not REDIS_URL:
    # kombu's filesystem transport needs its folders before a worker or producer starts.
    for key in ("data_folder_in", "processed_folder", "control_folder"):
        folder = CELERY_BROKER_TRANSPORT_OPTIONS[key]
        Path(folder).mkdir(parents=True, exist_ok=True)
