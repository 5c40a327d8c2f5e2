"""Org services: they enqueue their tasks after commit, and only then
(HackSoft style: the task's ``apply_async`` is patched, the point is the
service)."""

from __future__ import annotations

from unittest import mock

import pytest
from django.core.exceptions import ValidationError

from companies.audit import Actor
from orgs import tasks
from orgs.health import orgs_check_now
from orgs.models import UrlVerification
from orgs.url_change import org_url_change_start
from tests.factories import SalesforceOrgFactory

pytestmark = pytest.mark.django_db


def test_check_now_enqueues_one_check_per_org_after_commit(
    django_capture_on_commit_callbacks,
):
    orgs = SalesforceOrgFactory.create_batch(2)
    with mock.patch.object(tasks.check_org_health, "apply_async") as apply_async:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            orgs_check_now(org_ids=[o.pk for o in orgs])
        apply_async.assert_not_called()
        for callback in callbacks:
            callback()
    assert [c.kwargs["kwargs"] for c in apply_async.call_args_list] == [
        {"org_id": orgs[0].pk},
        {"org_id": orgs[1].pk},
    ]


def test_url_change_start_records_a_running_check_and_enqueues_it(
    django_capture_on_commit_callbacks,
):
    org = SalesforceOrgFactory(login_url="https://old.my.salesforce.com")
    with (
        mock.patch.object(tasks.verify_org_url, "apply_async") as apply_async,
        django_capture_on_commit_callbacks(execute=True),
    ):
        verification = org_url_change_start(
            actor=Actor.system(), org=org, new_url="https://new.my.salesforce.com/"
        )
    assert verification.state == UrlVerification.State.RUNNING
    assert verification.new_url == "https://new.my.salesforce.com"
    apply_async.assert_called_once_with(kwargs={"verification_id": verification.pk})


def test_url_change_start_refuses_a_foreign_host_and_enqueues_nothing(
    django_capture_on_commit_callbacks,
):
    org = SalesforceOrgFactory()
    with (
        mock.patch.object(tasks.verify_org_url, "apply_async") as apply_async,
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(ValidationError) as refused,
    ):
        org_url_change_start(
            actor=Actor.system(), org=org, new_url="https://canary.example"
        )
    assert "new_url" in refused.value.message_dict
    apply_async.assert_not_called()
    assert not UrlVerification.objects.filter(org=org).exists()
