"""Operating the hub: metrics, logs and traces, each in a module of its own."""
