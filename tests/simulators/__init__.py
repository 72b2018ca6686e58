"""Tests of hub/simulators."""
