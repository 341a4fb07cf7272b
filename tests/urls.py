"""The project's URLs plus endpoints only tests need (slow, blocking, failing views)."""

from django.urls import path

from config.urls import urlpatterns as project_urlpatterns
from tests import views

urlpatterns = [
    *project_urlpatterns,
    path("_test/sleep", views.sync_sleep),
    path("_test/async-sleep", views.async_sleep),
    path("_test/block-loop", views.block_event_loop),
    path("_test/raise", views.raise_error),
    path("_test/pid", views.pid),
    path("_test/db-sleep", views.database_sleep),
]
