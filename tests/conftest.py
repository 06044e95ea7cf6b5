"""Shared test configuration: reproducible hypothesis runs (a flaky test is a bug)."""

import os

from hypothesis import settings

settings.register_profile("repro", derandomize=True, print_blob=True)
settings.register_profile("explore", print_blob=True, max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repro"))
