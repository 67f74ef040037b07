"""The register's tiles on the staff dashboard: one per register model (its count and its flags), and a
link to the Art. 30 record. Each tile shows only to a user who may view its model, and each flag links to
the changelist filtered to the rows it counts (the filters live in inventory.admin)."""

from __future__ import annotations

from django.db.models import Exists, OuterRef
from django.urls import reverse

from privacyops.dashboard import Flag, Tile, register_tile

from . import models

# Where the register sits among other apps' tiles (queues and purges come first, later issues).
BASE_ORDER = 100


def _changelist(model) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


def _may_view(request, model) -> bool:
    return request.user.has_perm(f"{model._meta.app_label}.view_{model._meta.model_name}")


def _review_flag(model, url: str) -> list[Flag]:
    if not any(f.name == "needs_review" for f in model._meta.fields):
        return []
    count = model.objects.filter(needs_review=True).count()
    return [Flag("need review", count, f"{url}?needs_review__exact=1", "amber")] if count else []


def _transfer_flags(url: str) -> list[Flag]:
    """PM-V-3: no mechanism is red, an unspecified one amber."""
    flags = []
    red = models.Transfer.objects.filter(mechanism__in=list(models.Transfer.RED)).count()
    amber = models.Transfer.objects.filter(mechanism__in=list(models.Transfer.AMBER)).count()
    if red:
        flags.append(Flag("without a transfer mechanism", red, f"{url}?flag=red", "red"))
    if amber:
        flags.append(Flag("with the mechanism unspecified", amber, f"{url}?flag=amber", "amber"))
    return flags


def _purpose_flags(url: str) -> list[Flag]:
    count = models.Purpose.objects.filter(~Exists(models.PurposeBasis.objects.filter(purpose=OuterRef("pk")))).count()
    return [Flag("without any lawful basis", count, f"{url}?basis=none", "red")] if count else []


def _category_flags(url: str) -> list[Flag]:
    count = models.DataCategory.objects.filter(~Exists(models.ProcessingActivity.objects.filter(category=OuterRef("pk")))).count()
    return [Flag("used by no purpose", count, f"{url}?in_use=no", "amber")] if count else []


EXTRA_FLAGS = {
    models.Transfer: _transfer_flags,
    models.Purpose: _purpose_flags,
    models.DataCategory: _category_flags,
}

# Models that carry flags first.
TILE_MODELS = [
    models.Transfer,
    models.Purpose,
    models.DataCategory,
    models.PurposeBasis,
    models.ProcessingActivity,
    models.LawfulBasis,
    models.Jurisdiction,
    models.DataSubjectCategory,
    models.RecipientCategory,
    models.Recipient,
    models.CollectionSource,
    models.DataStore,
]


def _model_tile(model):
    def render(request):
        if not _may_view(request, model):
            return None
        url = _changelist(model)
        flags = [*EXTRA_FLAGS.get(model, lambda u: [])(url), *_review_flag(model, url)]
        return Tile(
            title=str(model._meta.verbose_name_plural).capitalize(),
            value=model.objects.count(),
            url=url,
            flags=flags,
        )

    return render


def _record_tile(request):
    if not request.user.has_perm("inventory.view_purpose"):
        return None
    return Tile(
        title="Record of processing (Art. 30)",
        value=models.Purpose.objects.count(),
        url=reverse("admin:inventory_record_of_processing"),
        severity="info",
        description="purposes in the record; printable, with CSV, JSON and JSON-LD downloads",
    )


register_tile("inventory.record_of_processing", title="Record of processing (Art. 30)", order=BASE_ORDER, render=_record_tile)
for position, register_model in enumerate(TILE_MODELS, start=1):
    register_tile(
        f"inventory.{register_model._meta.model_name}",
        title=str(register_model._meta.verbose_name_plural).capitalize(),
        order=BASE_ORDER + position,
        render=_model_tile(register_model),
    )
