"""kombu's filesystem transport, with messages that appear whole.

Why we carry it: kombu's ``Channel._put`` creates the message file under its
final ``*.<queue>.msg`` name and only then writes it, while ``_get`` lists,
moves and reads such files without any lock. A worker polling at that moment
reads an empty or partial file, and the JSONDecodeError kills it
("Unrecoverable error"). Known and open upstream: celery/kombu#1551. Here
``_put`` writes under a temporary name in the same folder, which the reader's
pattern never matches, and renames it into place: a rename within one
filesystem is atomic, so a reader sees the whole message or none. Everything
else is kombu's. Settings select it for ``filesystem://`` through Celery's
``broker_transport``; drop this module once upstream fixes the race.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        """Put ``payload`` onto ``queue``: write aside, then rename into place."""
        # The same name kombu gives a message, so ordering and matching hold.
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # A leading dot and a ".tmp" ending: the reader (and _size, _purge)
        # take only names whose part after the first dot is "<queue>.msg".
        temporary = os.path.join(self.data_folder_out, f".{uuid.uuid4()}.tmp")
        try:
            with open(temporary, "xb", buffering=0) as handle:
                handle.write(str_to_bytes(dumps(payload)))
            os.replace(temporary, final)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
