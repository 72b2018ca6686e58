"""Operating the hub: what it tells the people who run it (logs, metrics, traces)."""
