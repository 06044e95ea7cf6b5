"""Shared test configuration: the portable numeric mode before any test computes, and
reproducible hypothesis runs (a flaky test is a bug)."""

import os

from hypothesis import settings

import pruningrl  # noqa: F401 - first, so that every test computes in the portable numeric mode

settings.register_profile("repro", derandomize=True, print_blob=True)
settings.register_profile("explore", print_blob=True, max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repro"))
