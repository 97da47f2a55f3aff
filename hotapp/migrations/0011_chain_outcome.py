"""A run chain's outcome: Run.is_superseded, backfilled, and the index of chains that need
attention."""

from django.db import migrations, models

# Every failed attempt with a later attempt in its chain was retried. One statement: the failed
# rows come from run_status_idx, each probe from the origin_run_id index (and the attempt
# constraint). A first attempt is its own chain's origin; later attempts point at it.
BACKFILL = """
UPDATE hotapp_run SET is_superseded = true
WHERE status = 'failed' AND EXISTS (
    SELECT 1 FROM hotapp_run AS later
    WHERE later.origin_run_id = COALESCE(hotapp_run.origin_run_id, hotapp_run.id)
      AND later.attempt > hotapp_run.attempt
)
"""


class Migration(migrations.Migration):
    dependencies = [
        ("hotapp", "0010_api_tokens_and_audit"),
    ]

    operations = [
        migrations.AddField(
            model_name="run",
            name="is_superseded",
            field=models.BooleanField(db_default=False, default=False),
        ),
        migrations.RunSQL(BACKFILL, migrations.RunSQL.noop),
        migrations.AddIndex(
            model_name="run",
            index=models.Index(
                condition=models.Q(("is_superseded", False), ("status", "failed")),
                fields=["-created_at", "-id"],
                name="run_attention_idx",
            ),
        ),
        migrations.AddConstraint(
            model_name="run",
            constraint=models.CheckConstraint(
                condition=models.Q(("is_superseded", False), ("status", "failed"), _connector="OR"),
                name="run_superseded_only_if_failed",
            ),
        ),
    ]
