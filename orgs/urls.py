from django.urls import path

from connections import views as connection_views

from . import views

app_name = "orgs"

urlpatterns = [
    path("", views.org_index, name="list"),
    path("add/", connection_views.ConnectionWizard.as_view(), name="add"),
    path("queue/", views.operator_queue, name="queue"),
    path("<int:pk>/", views.org_detail, name="detail"),
    path(
        "<int:pk>/edit-connection/",
        connection_views.ConnectionWizard.as_view(),
        name="edit-connection",
    ),
    path("<int:pk>/settings/", views.org_settings, name="settings"),
    path("<int:pk>/reauthorize/", views.org_reauthorize, name="reauthorize"),
    path("<int:pk>/edit-url/", views.org_edit_url, name="edit-url"),
    path(
        "<int:pk>/edit-url/<int:verification_id>/status/",
        views.url_verification_status,
        name="url-status",
    ),
    path("<int:pk>/check/", views.org_check_now, name="check"),
    path(
        "<int:pk>/verify-permissions/",
        connection_views.org_verify_permissions,
        name="verify-permissions",
    ),
]
