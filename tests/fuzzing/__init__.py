"""Requests drawn from the schema for the fuzzer, tests/test_fuzz.py."""
