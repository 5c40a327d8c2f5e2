from django.urls import path

from . import views

app_name = "policies"

urlpatterns = [
    path("", views.policy_index, name="list"),
    path("<id:pk>/edit/", views.policy_edit, name="edit"),
]
