from django.urls import path

from connections import views as connection_views

from . import views

app_name = "orgs"

urlpatterns = [
    path("", views.org_index, name="list"),
    path("add/", connection_views.ConnectionWizard.as_view(), name="add"),
    path("<int:pk>/", views.org_detail, name="detail"),
    path(
        "<int:pk>/edit-connection/",
        connection_views.ConnectionWizard.as_view(),
        name="edit-connection",
    ),
    path("<int:pk>/settings/", views.org_settings, name="settings"),
    path(
        "<int:pk>/verify-permissions/",
        connection_views.org_verify_permissions,
        name="verify-permissions",
    ),
]
