"""The webhook URL is a credential (Slack's path is its key): encrypt it,
keep its host and fingerprint for display, and drop the plain column."""

from urllib.parse import urlsplit

from django.db import migrations, models

from vbsf import encryption


def encrypt_urls(apps, schema_editor):
    channels = apps.get_model("companies", "NotificationChannel")
    for channel in channels.objects.all():
        channel.url_encrypted = encryption.encrypt(channel.url)
        channel.url_host = urlsplit(channel.url).hostname or ""
        channel.url_fingerprint = encryption.fingerprint(channel.url)
        channel.save(update_fields=["url_encrypted", "url_host", "url_fingerprint"])


class Migration(migrations.Migration):
    dependencies = [
        ("companies", "0004_people_and_notifications"),
    ]

    operations = [
        migrations.AddField(
            model_name="notificationchannel",
            name="url_encrypted",
            field=models.TextField(default="", editable=False),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="notificationchannel",
            name="url_host",
            field=models.CharField(
                default="", editable=False, max_length=255, verbose_name="Webhook host"
            ),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="notificationchannel",
            name="url_fingerprint",
            field=models.CharField(default="", editable=False, max_length=16),
            preserve_default=False,
        ),
        migrations.RunPython(encrypt_urls, migrations.RunPython.noop),
        migrations.RemoveField(model_name="notificationchannel", name="url"),
    ]
