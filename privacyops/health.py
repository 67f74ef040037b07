"""Probes for the load balancer and the orchestrator.

`/healthz` (liveness) touches nothing: the process answers. `/readyz` (readiness) also makes one round
trip to the database, the one dependency without which no request can be served; a failing cache only
slows the consent checks down (they fall back to the database), so it does not make the process unready.
The consent API benchmark uses the two as its floor: a check that must read the database on every call
can be no cheaper than `/readyz`.
"""

import logging

from django.db import DatabaseError, connection
from django.http import HttpResponse
from django.views.decorators.http import require_GET

logger = logging.getLogger(__name__)


@require_GET
def healthz(request):
    return HttpResponse("ok", content_type="text/plain")


@require_GET
def readyz(request):
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError:
        logger.warning("readiness probe: the database is unavailable", exc_info=True)
        return HttpResponse("database unavailable", status=503, content_type="text/plain")
    return HttpResponse("ok", content_type="text/plain")
