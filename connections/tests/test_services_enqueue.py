"""Connection services enqueue their tasks after commit (HackSoft style:
the task's ``apply_async`` is patched; the point is the service)."""

from __future__ import annotations

from unittest import mock

import pytest
from django.core.exceptions import ValidationError

from companies.audit import Actor
from connections import services, tasks
from connections.models import ConnectionChange
from tests.factories import SalesforceOrgFactory
from vbsf.queue import PRIORITY_BACKGROUND, PRIORITY_FOLLOW_UP

pytestmark = pytest.mark.django_db

KEY = "3MVG9" + "k" * 80


def test_staging_a_change_enqueues_the_first_activation_probe_after_commit(
    django_capture_on_commit_callbacks,
):
    org = SalesforceOrgFactory()
    with mock.patch.object(tasks.probe_activation, "apply_async") as apply_async:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            change = services.connection_change_start(
                actor=Actor.system(),
                org=org,
                consumer_key=KEY,
                consumer_secret="a-secret-value",
            )
        apply_async.assert_not_called()
        for callback in callbacks:
            callback()
    apply_async.assert_called_once_with(kwargs={"change_id": change.pk, "attempt": 0})
    assert change.state == ConnectionChange.State.AWAITING_ACTIVATION


def test_a_refused_key_stages_nothing_and_enqueues_nothing(
    django_capture_on_commit_callbacks,
):
    org = SalesforceOrgFactory()
    with (
        mock.patch.object(tasks.probe_activation, "apply_async") as apply_async,
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(ValidationError, match="consumer key"),
    ):
        services.connection_change_start(
            actor=Actor.system(), org=org, consumer_key="short", consumer_secret="x"
        )
    apply_async.assert_not_called()
    assert not ConnectionChange.objects.filter(org=org).exists()


def test_cancelling_a_change_with_a_new_token_enqueues_its_revocation(
    django_capture_on_commit_callbacks,
):
    org = SalesforceOrgFactory()
    with mock.patch.object(tasks.probe_activation, "apply_async"):
        change = services.connection_change_start(
            actor=Actor.system(), org=org, consumer_key=KEY, consumer_secret="secret-1"
        )
    change.set_secret("new_refresh_token", "unused-token")
    change.state = ConnectionChange.State.AUTHORIZED
    change.save()
    with (
        mock.patch.object(tasks.revoke_old_token, "apply_async") as apply_async,
        django_capture_on_commit_callbacks(execute=True),
    ):
        services.connection_change_cancel(actor=Actor.system(), change=change)
    change.refresh_from_db()
    assert change.state == ConnectionChange.State.ROLLED_BACK
    assert not change.has_new_token
    assert change.get_secret("old_refresh_token") == "unused-token"
    apply_async.assert_called_once_with(
        kwargs={"change_id": change.pk}, priority=PRIORITY_BACKGROUND
    )


def test_a_check_someone_asked_for_goes_first_a_follow_up_after(
    django_capture_on_commit_callbacks,
):
    org = SalesforceOrgFactory()
    with (
        mock.patch.object(tasks.verify_permissions, "apply_async") as apply_async,
        django_capture_on_commit_callbacks(execute=True),
    ):
        asked = services.permission_check_start(actor=Actor.system(), org=org)
        follow_up = services.permission_check_start(
            actor=Actor.system(), org=org, follow_up=True
        )
    assert apply_async.call_args_list == [
        mock.call(kwargs={"check_id": asked.pk}),
        mock.call(kwargs={"check_id": follow_up.pk}, priority=PRIORITY_FOLLOW_UP),
    ]
