"""Browser-facing pages of the hub: GraphiQL and its vendored assets."""
