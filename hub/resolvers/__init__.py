"""Plain async functions per domain noun: arguments in, rows out."""
