"""Org URLs. ``vbsf/urls.py`` mounts ``urlpatterns`` under /orgs/ (the orgs
namespace), ``policy_urlpatterns`` under /policies/ and
``company_urlpatterns`` under /companies/, beside the routes of the apps
that share those prefixes."""

from django.urls import path

from vbsf import converters  # noqa: F401  (registers <id:...>)

from . import views

urlpatterns = [
    path("", views.org_index, name="list"),
    path("queue/", views.operator_queue, name="queue"),
    path("<id:pk>/settings/", views.org_settings, name="settings"),
    path("<id:pk>/edit-url/", views.org_edit_url, name="edit-url"),
    path(
        "<id:pk>/edit-url/<id:verification_id>/status/",
        views.url_verification_status,
        name="url-status",
    ),
    path("<id:pk>/check/", views.org_check_now, name="check"),
    path("<id:pk>/row/", views.org_row, name="row"),
]

policy_urlpatterns = [
    path("", views.policy_index, name="list"),
]

company_urlpatterns = [
    path("<id:pk>/move-orgs/", views.company_orgs_move, name="move-orgs"),
]
