"""Pure policy decisions: no I/O, no clock, no environment."""
