from django.urls import path

from vbsf import converters  # noqa: F401  (registers <id:...>)

from . import views
from .views import notifications, people

urlpatterns = [
    path("", views.company_index, name="list"),
    path("<id:pk>/", views.company_detail, name="detail"),
    path("<id:pk>/delete/", views.company_remove, name="delete"),
]

# Under /users/, in the users namespace.
user_urlpatterns = [
    path("", people.user_index, name="list"),
    path("invite/", people.user_invite, name="invite"),
    path("<id:pk>/", people.user_detail, name="detail"),
    path("<id:pk>/deactivate/", people.user_deactivate_view, name="deactivate"),
    path("<id:pk>/reactivate/", people.user_reactivate_view, name="reactivate"),
    path(
        "invitations/<id:pk>/revoke/",
        people.invitation_revoke_view,
        name="revoke-invitation",
    ),
]

# Under /settings/notifications/, in the notifications namespace.
notification_urlpatterns = [
    path("", notifications.notification_index, name="list"),
    path("<id:pk>/", notifications.notification_company, name="company"),
    path("<id:pk>/log/", notifications.notification_log, name="log"),
    path("<id:pk>/test/", notifications.notification_test, name="test"),
    path(
        "<id:pk>/rotate-secret/",
        notifications.notification_rotate_secret,
        name="rotate-secret",
    ),
]

# The invitee's one-time link, /invite/<token>/ (no sign-in).
invite_view = people.invitation_accept_view
