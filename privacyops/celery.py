"""The Celery application. Tasks are discovered in each app's `tasks.py`.

Defaults that matter for data jobs (acks_late, prefetch 1, time limits, the three queues) are set in
settings under the CELERY_ namespace, so they hold for every task without each one repeating them.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "privacyops.settings")

app = Celery("privacyops")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
