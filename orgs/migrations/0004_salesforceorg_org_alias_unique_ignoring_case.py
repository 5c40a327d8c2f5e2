# A separate migration from the data fix in 0003: PostgreSQL refuses some
# schema changes in a transaction that still has pending trigger events.

import django.db.models.functions.text
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("orgs", "0003_reset_duplicate_aliases"),
    ]

    operations = [
        migrations.AddConstraint(
            model_name="salesforceorg",
            constraint=models.UniqueConstraint(
                django.db.models.functions.text.Lower("alias"),
                name="org_alias_unique_ignoring_case",
                violation_error_message=(
                    "Another org already has this alias (aliases ignore case)."
                ),
            ),
        ),
    ]
