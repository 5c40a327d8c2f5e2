"""Before aliases become unique ignoring case (0004): make existing data fit.

Until now nothing stopped two orgs from being called "acme-prod" and
"Acme-Prod", or an alias from being blank. The oldest org (lowest pk) of
each case-insensitive group keeps its alias; the others, and blank aliases,
go back to the default, the org ID (unique), with one audit event each so
the rename is on record. Groups are computed with the database's own
LOWER(), the expression the new unique index uses.
"""

from django.db import migrations
from django.db.models.functions import Lower


def reset_duplicate_aliases(apps, schema_editor):
    SalesforceOrg = apps.get_model("orgs", "SalesforceOrg")
    AuditEvent = apps.get_model("companies", "AuditEvent")
    rows = list(
        SalesforceOrg.objects.annotate(alias_key=Lower("alias"))
        .order_by("pk")
        .values_list("pk", "alias", "alias_key", "org_id")
    )
    taken = {}
    resets = []
    for pk, alias, key, org_id in rows:
        if alias.strip() and key not in taken:
            taken[key] = pk
        else:
            resets.append((pk, alias, org_id))
    for pk, old_alias, org_id in resets:
        # Org IDs are ASCII, so Python's lower() is the database's here.
        new_alias = org_id if org_id.lower() not in taken else f"{org_id}-{pk}"
        taken[new_alias.lower()] = pk
        org = SalesforceOrg.objects.select_related("company").get(pk=pk)
        SalesforceOrg.objects.filter(pk=pk).update(alias=new_alias)
        AuditEvent.objects.create(
            actor_username="system",
            company=org.company,
            company_name=org.company.name,
            org=org,
            org_label=new_alias,
            action="org.update",
            summary=(
                f"Alias {old_alias.strip() or '(blank)'} reset to {new_alias}: "
                "aliases are now unique ignoring case"
            )[:300],
            before={"alias": old_alias},
            after={"alias": new_alias},
        )


class Migration(migrations.Migration):
    dependencies = [
        ("companies", "0003_incident"),
        ("orgs", "0002_urlverification"),
    ]

    operations = [
        migrations.RunPython(reset_duplicate_aliases, migrations.RunPython.noop),
    ]
