"""The test site's settings without a channel layer (a project that has none)."""

from tests.site.settings import *  # noqa: F403

del CHANNEL_LAYERS  # noqa: F821
