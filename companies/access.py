"""Who may see and do what, per company (SPEC §1).

Roles are granted per company; an Administrator grant is global. Every view
asks this module, through ``request.access``, which loads a user's grants
once per request.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from functools import cached_property
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.shortcuts import get_object_or_404

from .models import Company, Role, RoleGrant


class Capability(enum.StrEnum):
    VIEW = "view"
    REAUTHORIZE = "reauthorize"
    RUN_CHECKS = "run_checks"  # health checks
    VERIFY_PERMISSIONS = "verify_permissions"
    EDIT_ORG_URL = "edit_org_url"
    EDIT_CONNECTION = "edit_connection"  # wizard, client apps, add orgs
    MANAGE_COMPANIES = "manage_companies"
    MANAGE_USERS = "manage_users"
    VIEW_AUDIT = "view_audit"


ROLE_CAPABILITIES: dict[str, frozenset[Capability]] = {
    Role.ADMINISTRATOR: frozenset(Capability),
    Role.OPERATOR: frozenset(
        {
            Capability.VIEW,
            Capability.REAUTHORIZE,
            Capability.RUN_CHECKS,
            Capability.VERIFY_PERMISSIONS,
        }
    ),
    Role.SUPPORT: frozenset(
        {Capability.VIEW, Capability.EDIT_ORG_URL, Capability.RUN_CHECKS}
    ),
    Role.VIEWER: frozenset({Capability.VIEW}),
}

# When a user holds several roles, the navigation shows the strongest.
ROLE_ORDER = [Role.ADMINISTRATOR, Role.OPERATOR, Role.SUPPORT, Role.VIEWER]


class AccessProfile:
    """A user's grants, loaded with one query and answered from memory."""

    def __init__(self, user: AbstractBaseUser | AnonymousUser) -> None:
        self.user = user

    @cached_property
    def _grants(self) -> list[tuple[str, int | None]]:
        if not self.user.is_authenticated or not self.user.is_active:
            return []
        return list(
            RoleGrant.objects.filter(user_id=self.user.pk).values_list(
                "role", "company_id"
            )
        )

    @cached_property
    def is_administrator(self) -> bool:
        if getattr(self.user, "is_superuser", False) and self.user.is_active:
            return True
        return any(
            role == Role.ADMINISTRATOR and company is None
            for role, company in self._grants
        )

    @cached_property
    def roles_by_company(self) -> dict[int, str]:
        return {company: role for role, company in self._grants if company is not None}

    @cached_property
    def primary_role(self) -> str | None:
        if self.is_administrator:
            return Role.ADMINISTRATOR
        held = set(self.roles_by_company.values())
        for role in ROLE_ORDER:
            if role in held:
                return role
        return None

    @property
    def primary_role_label(self) -> str:
        return Role(self.primary_role).label if self.primary_role else "No role"

    def company_ids(self) -> set[int] | None:
        """Companies the user can see; ``None`` means all of them."""
        if self.is_administrator:
            return None
        return set(self.roles_by_company)

    def companies(self) -> QuerySet[Company]:
        ids = self.company_ids()
        qs = Company.objects.all()
        return qs if ids is None else qs.filter(pk__in=ids)

    def scope(self, queryset: QuerySet, company_field: str = "company") -> QuerySet:
        """Restrict a queryset to the user's companies."""
        ids = self.company_ids()
        if ids is None:
            return queryset
        # An empty field means the rows are companies themselves.
        lookup = f"{company_field}__in" if company_field else "pk__in"
        return queryset.filter(**{lookup: ids})

    def can(self, capability: Capability, company_id: int | None = None) -> bool:
        """May the user do this in this company (or in any, if None)?"""
        if self.is_administrator:
            return True
        if company_id is None:
            return any(
                capability in ROLE_CAPABILITIES[role]
                for role in self.roles_by_company.values()
            )
        role = self.roles_by_company.get(company_id)
        return role is not None and capability in ROLE_CAPABILITIES[role]

    def companies_with(self, capability: Capability) -> QuerySet[Company]:
        ids = self.company_ids()
        if ids is None:
            return Company.objects.all()
        allowed = [
            c
            for c, role in self.roles_by_company.items()
            if capability in ROLE_CAPABILITIES[role]
        ]
        return Company.objects.filter(pk__in=allowed)

    def company_q(self, capability: Capability, field: str = "company") -> Q:
        """A filter for rows in companies where the user has the capability."""
        if self.is_administrator:
            return Q()
        allowed: Iterable[int] = [
            c
            for c, role in self.roles_by_company.items()
            if capability in ROLE_CAPABILITIES[role]
        ]
        return Q(**{f"{field}__in": list(allowed)})


def get_object_for(
    access: AccessProfile,
    queryset: QuerySet,
    *,
    capability: Capability,
    company_field: str = "company",
    **lookup: object,
) -> Any:
    """One object of the user's companies on which they may use ``capability``.

    Objects of other companies do not exist for the user (404); an object
    they may see but not act on is forbidden (403). Every view fetches its
    object through this, as healthchecks' ``_get_rw_project_for_user``.
    """
    obj = get_object_or_404(access.scope(queryset, company_field), **lookup)
    company_id = _company_id_of(obj, company_field)
    if not access.can(capability, company_id):
        raise PermissionDenied
    return obj


def _company_id_of(obj: Any, company_field: str) -> int | None:
    if not company_field:
        return obj.pk
    *path, last = company_field.split("__")
    for part in path:
        obj = getattr(obj, part)
    return getattr(obj, f"{last}_id")
