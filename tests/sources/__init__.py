"""Tests of hub/sources."""
