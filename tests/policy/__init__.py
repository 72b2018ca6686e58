"""Tests of hub/policy."""
