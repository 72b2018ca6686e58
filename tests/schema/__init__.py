"""Tests of hub/schema."""
