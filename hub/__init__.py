"""Influencer Hub: one consent-aware GraphQL endpoint over influencer marketing data."""

__version__ = "0.1.0"
