"""End-to-end tests: the real server, the GraphQL-over-HTTP audit and a real browser."""
