"""The console's URLs (SPEC §3).

The one place that wires the apps together: pages of a higher app that
belong under a lower app's prefix (the org page under /orgs/, the move of
orgs under /companies/) are mounted here beside that app's own routes, in
its namespace, so no app imports a higher one.
"""

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from companies import urls as company_urls
from companies import views as company_views
from connections import urls as connection_urls
from connections.views import signin
from orgs import urls as org_urls
from orgs import views as org_views

from . import views

urlpatterns = [
    path("", org_views.dashboard, name="dashboard"),
    path("login/", signin.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", views.metrics, name="metrics"),
    path(
        "orgs/",
        include((org_urls.urlpatterns + connection_urls.org_urlpatterns, "orgs")),
    ),
    path(
        "policies/",
        include(
            (
                org_urls.policy_urlpatterns + connection_urls.policy_urlpatterns,
                "policies",
            )
        ),
    ),
    path(
        "companies/",
        include(
            (
                company_urls.urlpatterns + org_urls.company_urlpatterns,
                "companies",
            )
        ),
    ),
    path("", include("connections.urls")),
    path(
        "campaigns/",
        include((connection_urls.campaign_urlpatterns, "campaigns")),
    ),
    path("r/", include((connection_urls.delegated_urlpatterns, "delegated"))),
    path("audit/", company_views.audit_index, name="audit"),
    path("users/", include((company_urls.user_urlpatterns, "users"))),
    path("invite/<str:token>/", company_urls.invite_view, name="invite"),
    path(
        "settings/notifications/",
        include((company_urls.notification_urlpatterns, "notifications")),
    ),
    path("audit/export.csv", company_views.audit_export, name="audit-export"),
]

if settings.ADMIN_ENABLED:
    urlpatterns.append(path("admin/", admin.site.urls))
