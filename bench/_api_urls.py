"""The project's URLs plus the consent API bench's floor: `GET /bench/floor/<subject_ref>`.

The floor makes the one read every consent check must make -- the subject's account and chain version, in the
query the decision cache's guarantee rests on (`consents.selectors.subject_snapshots`, see consents.decisions)
-- and answers a small JSON object, behind the same middleware as every view. No key check, no rate budget, no
decision: what a cached check costs beyond this is what the API itself adds. Served only by the bench's server
(bench/_api_settings.py); nothing else routes here.
"""

from django.http import JsonResponse
from django.urls import path
from django.views.decorators.http import require_GET

from consents.selectors import subject_snapshots
from privacyops.urls import urlpatterns as project_urlpatterns


@require_GET
def floor(request, subject_ref):
    snapshot = subject_snapshots(subject_refs=[subject_ref]).get(subject_ref)
    return JsonResponse({"chain_version": None if snapshot is None else snapshot.chain_version})


urlpatterns = [path("bench/floor/<uuid:subject_ref>", floor), *project_urlpatterns]
