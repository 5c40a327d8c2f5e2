from django.urls import path

from . import signin, views

app_name = "connections"

urlpatterns = [
    path("oauth/callback/", views.oauth_callback, name="oauth-callback"),
    path("login/salesforce/", signin.signin_start, name="signin-start"),
    path(
        "login/salesforce/wait/<id:attempt_id>/",
        signin.signin_wait,
        name="signin-wait",
    ),
    path(
        "connections/changes/<id:change_id>/authorize/",
        views.authorize,
        name="authorize",
    ),
    path(
        "connections/changes/<id:change_id>/status/",
        views.change_status,
        name="change-status",
    ),
    path(
        "connections/checks/<id:check_id>/status/",
        views.check_status,
        name="check-status",
    ),
]
