from django.urls import path

from vbsf import converters  # noqa: F401  (registers <id:...>)

from . import views

urlpatterns = [
    path("", views.company_index, name="list"),
    path("<id:pk>/", views.company_detail, name="detail"),
    path("<id:pk>/delete/", views.company_remove, name="delete"),
]
