"""The test site's URLs: a plain sync and async view, the admin, and views that
misbehave on purpose (slow, blocking, failing, streaming, leaking)."""

from django.contrib import admin
from django.urls import path

from tests.site import views

urlpatterns = [
    path("_test/hello", views.hello),
    path("_test/hello/async", views.hello_async),
    path("_test/groups", views.groups),
    path("admin/", admin.site.urls),
    path("_test/sleep", views.sync_sleep),
    path("_test/async-sleep", views.async_sleep),
    path("_test/block-loop", views.block_event_loop),
    path("_test/raise", views.raise_error),
    path("_test/raise/<str:key>", views.raise_lookup_error),
    path("_test/grow", views.grow),
    path("_test/pid", views.pid),
    path("_test/frozen", views.frozen),
    path("_test/db-sleep", views.database_sleep),
    path("_test/db-ping", views.database_ping),
    path("_test/db-settings", views.database_settings),
    path("_test/db-iterate", views.database_iterate),
    path("_test/idle-in-transaction", views.idle_in_transaction),
    path("_test/where/sync", views.where_sync),
    path("_test/where/async", views.where_async),
    path("_test/async-to-sync", views.async_to_sync_from_a_sync_view),
    path("_test/signals", views.signals_of),
    path("_test/cancellable-sleep", views.cancellable_sleep),
    path("_test/cancelled", views.cancelled_views),
    path("_test/stream/sync", views.stream_sync),
    path("_test/stream/async", views.stream_async),
    path("_test/stream/progress", views.stream_progress),
    path("_test/file", views.file),
    path("_test/echo", views.echo),
    path("_test/upload", views.upload),
    path("_test/gzip-body", views.gzip_body),
    path("_test/note-ran", views.note_ran),
    path("_test/ran", views.ran),
    path("_test/stream/queries", views.stream_with_queries),
    path("_test/connection-of", views.connection_of),
    path("_test/stream/cancelled", views.stream_cancelled),
    path("_test/leak-connection", views.leak_a_connection),
    path("_test/threads", views.threads_and_modules),
]
