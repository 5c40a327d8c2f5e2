"""factory_boy factories for the console's models."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model

from companies.models import Company, RoleGrant
from connections.models import ExternalClientApp
from connections.salesforce.urls import to_18
from orgs.models import BackupPolicy, ConnectionStatus, SalesforceOrg


class CompanyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Company
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"Company {n:05d}")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")

    @factory.post_generation
    def password(self, create: bool, extracted: str | None, **kwargs: object):
        self.set_password(extracted or "pw")
        if create:
            self.save()


class RoleGrantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RoleGrant

    user = factory.SubFactory(UserFactory)
    role = "viewer"
    company = factory.SubFactory(CompanyFactory)


class ExternalClientAppFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ExternalClientApp
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"app-{n}")
    consumer_key = factory.Sequence(lambda n: f"3MVG9{n:080d}")
    scopes = factory.LazyFunction(lambda: ["api", "refresh_token"])

    @factory.post_generation
    def consumer_secret(self, create: bool, extracted: str | None, **kwargs: object):
        self.set_consumer_secret(extracted or f"secret-for-{self.name}")
        if create:
            self.save()


def _org_id(n: int) -> str:
    return to_18(f"00D5g0000{n:06d}")


class SalesforceOrgFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SalesforceOrg
        skip_postgeneration_save = True

    alias = factory.Sequence(lambda n: f"org-{n:05d}")
    org_id = factory.Sequence(_org_id)
    login_url = factory.Sequence(lambda n: f"https://org{n}.my.salesforce.com")
    instance_url = factory.LazyAttribute(lambda o: o.login_url)
    company = factory.SubFactory(CompanyFactory)
    client_app = factory.SubFactory(ExternalClientAppFactory)
    status = ConnectionStatus.CONNECTED
    connected_as_username = factory.Sequence(lambda n: f"int{n}@example.com")

    @factory.post_generation
    def refresh_token(self, create: bool, extracted: str | None, **kwargs: object):
        if extracted:
            self.set_refresh_token(extracted)
            if create:
                self.save()


class BackupPolicyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = BackupPolicy

    org = factory.SubFactory(SalesforceOrgFactory)
    name = factory.LazyAttribute(lambda p: f"Backup of {p.org.alias}")
    org_url = factory.LazyAttribute(lambda p: p.org.login_url)
    client_app = factory.LazyAttribute(lambda p: p.org.client_app)
