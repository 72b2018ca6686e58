"""Strawberry types per domain noun, and the schema extensions."""
