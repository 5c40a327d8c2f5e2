"""The one access helper: 404 across companies, 403 for a forbidden action."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied
from django.http import Http404

from companies.access import AccessProfile, Capability
from orgs.selectors import org_get, policy_get
from tests.factories import (
    BackupPolicyFactory,
    RoleGrantFactory,
    SalesforceOrgFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def viewer_and_orgs():
    mine, theirs = SalesforceOrgFactory(), SalesforceOrgFactory()
    user = UserFactory()
    RoleGrantFactory(user=user, role="viewer", company=mine.company)
    return AccessProfile(user), mine, theirs


def test_an_org_of_another_company_does_not_exist(viewer_and_orgs):
    access, _, theirs = viewer_and_orgs
    with pytest.raises(Http404):
        org_get(access=access, pk=theirs.pk)


def test_an_org_the_role_may_see_but_not_act_on_is_forbidden(viewer_and_orgs):
    access, mine, _ = viewer_and_orgs
    assert org_get(access=access, pk=mine.pk) == mine
    with pytest.raises(PermissionDenied):
        org_get(access=access, pk=mine.pk, capability=Capability.REAUTHORIZE)


def test_policies_follow_their_org_company(viewer_and_orgs):
    access, mine, theirs = viewer_and_orgs
    policy, foreign = BackupPolicyFactory(org=mine), BackupPolicyFactory(org=theirs)
    assert policy_get(access=access, pk=policy.pk) == policy
    with pytest.raises(Http404):
        policy_get(access=access, pk=foreign.pk)
    with pytest.raises(PermissionDenied):
        policy_get(access=access, pk=policy.pk, capability=Capability.EDIT_CONNECTION)
