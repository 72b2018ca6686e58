"""Tests of hub/store."""
