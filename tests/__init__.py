"""The hub's tests."""
