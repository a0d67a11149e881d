"""Tests of the CrossGuard policy packs in ``policies/``, driven over the analyzer protocol."""
