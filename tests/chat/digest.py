"""A digest of every chat row and demo account that ignores database ids (foreign keys by natural key)."""

import hashlib

from accounts.models import User
from chat import demo, models

NATURAL = {
    User: demo.COLUMNS[User],
    models.Conversation: ["user__email", "title", "created", "updated"],
    models.Message: ["conversation__user__email", "conversation__created", "role", "content", "created"],
    models.Attachment: ["message__conversation__user__email", "message__created", "file", "kind", "size", "sha256", "created"],
    models.Feedback: [
        "user__email",
        "message__conversation__user__email",
        "message__created",
        "rating",
        "comment",
        "conversation_snapshot",
        "created",
        "anonymised_at",
    ],
    models.SupportMessage: ["user__email", *demo.COLUMNS[models.SupportMessage]],
    models.AccessLog: ["user__email", *demo.COLUMNS[models.AccessLog]],
    models.UsageEvent: ["user__email", *demo.COLUMNS[models.UsageEvent]],
}


def rows_digest() -> str:
    digest = hashlib.sha256()
    for model, fields in NATURAL.items():
        rows = sorted(repr(row) for row in model.objects.values_list(*fields))
        digest.update(f"{model._meta.label}:{len(rows)}\n".encode())
        for row in rows:
            digest.update(row.encode() + b"\n")
    return digest.hexdigest()


def delete_demo() -> None:
    for model in reversed(list(NATURAL)):
        model.objects.all().delete()
