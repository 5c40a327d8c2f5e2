"""The console's URLs (SPEC §3)."""

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, register_converter

from companies import views as company_views
from orgs import views as org_views

from .converters import IdConverter

register_converter(IdConverter, "id")

urlpatterns = [
    path("", org_views.dashboard, name="dashboard"),
    path("login/", company_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", company_views.healthz, name="healthz"),
    path("orgs/", include("orgs.urls")),
    path("policies/", include("orgs.policy_urls")),
    path("companies/", include("companies.urls")),
    path("", include("connections.urls")),
    path("audit/", company_views.audit_index, name="audit"),
    path("audit/export.csv", company_views.audit_export, name="audit-export"),
]

if settings.ADMIN_ENABLED:
    urlpatterns.append(path("admin/", admin.site.urls))
