"""The subnetwork tests run on one torch thread."""

from subnetwork_helpers import one_thread  # noqa: F401
