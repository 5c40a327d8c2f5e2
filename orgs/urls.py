from django.urls import path

from connections import views as connection_views

from . import views

app_name = "orgs"

urlpatterns = [
    path("", views.org_index, name="list"),
    path("add/", connection_views.ConnectionWizard.as_view(), name="add"),
    path("queue/", views.operator_queue, name="queue"),
    path("<id:pk>/", views.org_detail, name="detail"),
    path(
        "<id:pk>/edit-connection/",
        connection_views.ConnectionWizard.as_view(),
        name="edit-connection",
    ),
    path("<id:pk>/settings/", views.org_settings, name="settings"),
    path("<id:pk>/reauthorize/", views.org_reauthorize, name="reauthorize"),
    path("<id:pk>/edit-url/", views.org_edit_url, name="edit-url"),
    path(
        "<id:pk>/edit-url/<id:verification_id>/status/",
        views.url_verification_status,
        name="url-status",
    ),
    path("<id:pk>/check/", views.org_check_now, name="check"),
    path(
        "<id:pk>/verify-permissions/",
        connection_views.org_verify_permissions,
        name="verify-permissions",
    ),
]
