from django.contrib.admin.apps import AdminConfig


class ConsoleAdminConfig(AdminConfig):
    default_site = "vbsf.admin.ConsoleAdminSite"
