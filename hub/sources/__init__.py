"""Source adapters: every system behind the hub is reached through one of these modules."""
