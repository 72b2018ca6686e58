"""What browsers meet: GraphiQL and its vendored assets, CORS."""
