"""Connection URLs. ``urlpatterns`` are the connections namespace; the org
and policy pages that need a connection are mounted by ``vbsf/urls.py``
beside the orgs app's own routes, in the ``orgs`` and ``policies``
namespaces, so their URLs and names stay what SPEC §3 says."""

from django.urls import path

from vbsf import converters  # noqa: F401  (registers <id:...>)

from .views import (
    bulk,
    campaigns,
    delegated,
    oauth,
    org_page,
    progress,
    settings,
    signin,
    wizard,
)

app_name = "connections"

urlpatterns = [
    path("oauth/callback/", oauth.oauth_callback, name="oauth-callback"),
    path("login/salesforce/", signin.signin_start, name="signin-start"),
    path(
        "login/salesforce/wait/<id:attempt_id>/",
        signin.signin_wait,
        name="signin-wait",
    ),
    path("settings/sign-in/", settings.signin_settings, name="signin-settings"),
    path(
        "settings/sign-in/off/",
        settings.signin_settings_off,
        name="signin-settings-off",
    ),
    path(
        "settings/sign-in/links/<id:pk>/unlink/",
        settings.identity_link_unlink,
        name="signin-settings-unlink",
    ),
    path(
        "connections/changes/<id:change_id>/authorize/",
        oauth.authorize,
        name="authorize",
    ),
    path(
        "connections/changes/<id:change_id>/status/",
        progress.change_status,
        name="change-status",
    ),
    path(
        "connections/checks/<id:check_id>/status/",
        progress.check_status,
        name="check-status",
    ),
]

# Under /orgs/, in the orgs namespace.
org_urlpatterns = [
    path("bulk/", bulk.bulk_action, name="bulk"),
    path("bulk/<id:pk>/", bulk.bulk_progress, name="bulk-progress"),
    path("add/", wizard.add_organization, name="add"),
    path("add/<slug:step>/", wizard.add_organization, name="add-step"),
    path("<id:pk>/", org_page.org_detail, name="detail"),
    path("<id:pk>/live/", org_page.org_live, name="live"),
    path("<id:pk>/edit-connection/", wizard.edit_connection, name="edit-connection"),
    path(
        "<id:pk>/edit-connection/<slug:step>/",
        wizard.edit_connection,
        name="edit-connection-step",
    ),
    path("<id:pk>/reauthorize/", org_page.org_reauthorize, name="reauthorize"),
    path(
        "<id:pk>/verify-permissions/",
        org_page.org_verify_permissions,
        name="verify-permissions",
    ),
]

# Under /policies/, in the policies namespace.
policy_urlpatterns = [
    path("<id:pk>/edit/", org_page.policy_edit, name="edit"),
]

# Under /campaigns/, in the campaigns namespace (SPEC §9).
campaign_urlpatterns = [
    path("", campaigns.campaign_list, name="list"),
    path("<id:pk>/", campaigns.campaign_detail, name="detail"),
    path("<id:pk>/live/", campaigns.campaign_live, name="live"),
    path("<id:pk>/settings/", campaigns.campaign_settings, name="settings"),
    path(
        "<id:pk>/rows/<id:row_pk>/reauthorize/",
        campaigns.campaign_row_reauthorize,
        name="row-reauthorize",
    ),
    path(
        "<id:pk>/rows/<id:row_pk>/send-link/",
        campaigns.campaign_row_send_link,
        name="row-send-link",
    ),
    path(
        "<id:pk>/rows/<id:row_pk>/copy-link/",
        campaigns.campaign_row_copy_link,
        name="row-copy-link",
    ),
    path(
        "<id:pk>/rows/<id:row_pk>/skip/", campaigns.campaign_row_skip, name="row-skip"
    ),
]

# Under /r/, in the delegated namespace: the pages of a delegated link,
# opened without a console sign-in.
delegated_urlpatterns = [
    path("result/<id:row_id>/", delegated.delegated_result, name="result"),
    path("result/<id:row_id>/retry/", delegated.delegated_retry, name="retry"),
    path("<str:token>/", delegated.delegated_landing, name="landing"),
]
