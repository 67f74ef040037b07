# The permissions of the moved models keep their rows (and so every group and user that holds them): their
# content types are renamed from consents.* to policies.*. `consents.publish_policyversion` is thereafter
# `policies.publish_policyversion`, the same row. A new database has no such content types yet (they are
# created after migrate): nothing to do. If both exist (a policies content type was created before this
# ran), the old permissions' holders are given the new permission of the same codename.

from django.db import migrations

MODELS = ("policyversion", "policyacceptance", "policynoticedelivery")


def _move(apps, schema_editor, *, source: str, target: str):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    db = schema_editor.connection.alias
    for model in MODELS:
        old = ContentType.objects.using(db).filter(app_label=source, model=model).first()
        if old is None:
            continue
        new = ContentType.objects.using(db).filter(app_label=target, model=model).first()
        if new is None:
            old.app_label = target
            old.save(update_fields=["app_label"])
            continue
        for perm in Permission.objects.using(db).filter(content_type=old):
            twin = Permission.objects.using(db).filter(content_type=new, codename=perm.codename).first()
            if twin is None:
                perm.content_type = new
                perm.save(update_fields=["content_type"])
            else:
                twin.group_set.add(*perm.group_set.all())
                twin.user_set.add(*perm.user_set.all())


def forwards(apps, schema_editor):
    _move(apps, schema_editor, source="consents", target="policies")


def backwards(apps, schema_editor):
    _move(apps, schema_editor, source="policies", target="consents")


class Migration(migrations.Migration):

    dependencies = [
        ("policies", "0001_initial"),
        ("consents", "0008_policy_models_moved"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
