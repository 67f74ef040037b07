"""The running hash of a consent chain as an aggregate, for the PostgreSQL import (consents.importing).

`consent_chain_hash(head, prefix, suffix)` used as a window aggregate ordered along a chain gives, for
each event, sha256(prefix || previous hash || suffix) where the previous hash is the result for the row
before, or `head` for the first: PostgreSQL advances a running aggregate one row at a time, so a whole
file is chained in one sorted pass. PostgreSQL only; elsewhere this migration does nothing."""

from django.db import migrations

CREATE = """
CREATE FUNCTION consent_chain_step(previous text, head text, prefix text, suffix text) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN encode(sha256(convert_to(prefix || coalesce(previous, head) || suffix, 'UTF8')), 'hex');
END
$$;
CREATE AGGREGATE consent_chain_hash(text, text, text) (SFUNC = consent_chain_step, STYPE = text);
"""

DROP = """
DROP AGGREGATE IF EXISTS consent_chain_hash(text, text, text);
DROP FUNCTION IF EXISTS consent_chain_step(text, text, text, text);
"""


def _on_postgresql(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("consents", "0005_consent_event_lean_indexes"),
    ]

    operations = [
        migrations.RunPython(_on_postgresql(CREATE), _on_postgresql(DROP), elidable=False),
    ]
