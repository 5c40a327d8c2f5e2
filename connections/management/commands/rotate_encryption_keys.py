"""Re-encrypt every stored secret under the newest key.

Resumable: each row is re-encrypted in its own short transaction and rows
already under the newest key are skipped, so an interrupted run can simply
be started again, and a second run changes nothing.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from connections.encrypted_fields import encrypted_fields
from vbsf import encryption


class Command(BaseCommand):
    help = "Re-encrypt stored secrets under the newest VBSF_ENCRYPTION_KEYS key."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--batch-size", type=int, default=200)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            current = encryption.current_key_id()
        except encryption.SecretUnavailable as exc:
            raise CommandError(str(exc)) from None
        prefix = f"{encryption.PREFIX}:{current}:"
        rotated = failed = 0
        for model, field in encrypted_fields():
            pending = (
                model.objects.exclude(**{field: ""})
                .exclude(**{f"{field}__startswith": prefix})
                .order_by("pk")
            )
            last_pk = 0
            while True:
                batch = list(
                    pending.filter(pk__gt=last_pk).values_list("pk", flat=True)[
                        : options["batch_size"]
                    ]
                )
                if not batch:
                    break
                for pk in batch:
                    last_pk = pk
                    try:
                        rotated += self._rotate_row(model, field, pk)
                    except encryption.SecretUnavailable as exc:
                        failed += 1
                        self.stderr.write(f"{model._meta.label} #{pk}: {exc}")
        self.stdout.write(
            f"Re-encrypted {rotated} secret(s) under key {current}; {failed} failed."
        )
        if failed:
            raise CommandError(
                f"{failed} secret(s) could not be decrypted; they were left as they "
                "are. Add the missing key to VBSF_ENCRYPTION_KEYS and run again."
            )

    @staticmethod
    def _rotate_row(model: type, field: str, pk: int) -> int:
        with transaction.atomic():
            row = model.objects.select_for_update().get(pk=pk)
            value = getattr(row, field)
            if not value or not encryption.needs_rotation(value):
                return 0  # another run got here first
            model.objects.filter(pk=pk).update(**{field: encryption.reencrypt(value)})
            return 1
