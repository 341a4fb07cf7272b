"""URLs. The health probes are not here: they are answered before Django (health/probes.py)."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("example.urls")),
]
