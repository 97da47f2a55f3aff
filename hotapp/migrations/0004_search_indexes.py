"""PostgreSQL-only indexes for the dashboard's payload search (hotapp/search.py).

SQLite, the embedded default, has no GIN or trigram indexes; it answers the same queries by
scanning. The trigram expressions must stay identical to RUN_TEXT_SQL and EVENT_TEXT_SQL.
"""

from django.db import migrations

POSTGRES_SQL = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    # key:value search on runs: input @> '{"order_id": 42}'.
    "CREATE INDEX IF NOT EXISTS run_input_gin ON hotapp_run USING gin (input jsonb_path_ops)",
    # key:value search on runs: result @> '{"tracking": "TRK1"}'.
    "CREATE INDEX IF NOT EXISTS run_result_gin ON hotapp_run USING gin (result jsonb_path_ops)",
    # Free-text search on runs: RUN_TEXT_SQL ILIKE '%word%'.
    "CREATE INDEX IF NOT EXISTS run_text_trgm ON hotapp_run USING gin (("
    "input::text || ' ' || coalesce(result::text, '') || ' ' || error_type || ' ' || "
    "error_message) gin_trgm_ops)",
    # key:value search on events: data @> '{"order_id": 42}'.
    "CREATE INDEX IF NOT EXISTS event_data_gin ON hotapp_event USING gin (data jsonb_path_ops)",
    # Free-text search on events: EVENT_TEXT_SQL ILIKE '%word%'.
    "CREATE INDEX IF NOT EXISTS event_text_trgm ON hotapp_event USING gin "
    "((data::text) gin_trgm_ops)",
]
POSTGRES_REVERSE_SQL = [
    "DROP INDEX IF EXISTS run_input_gin",
    "DROP INDEX IF EXISTS run_result_gin",
    "DROP INDEX IF EXISTS run_text_trgm",
    "DROP INDEX IF EXISTS event_data_gin",
    "DROP INDEX IF EXISTS event_text_trgm",
]


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for sql in POSTGRES_SQL:
            schema_editor.execute(sql)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for sql in POSTGRES_REVERSE_SQL:
            schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [("hotapp", "0003_dashboard")]
    operations = [migrations.RunPython(create, drop)]
