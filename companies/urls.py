from django.urls import path

from . import views

app_name = "companies"

urlpatterns = [
    path("", views.company_index, name="list"),
    path("<id:pk>/", views.company_detail, name="detail"),
    path("<id:pk>/move-orgs/", views.company_move_orgs, name="move-orgs"),
    path("<id:pk>/delete/", views.company_remove, name="delete"),
]
