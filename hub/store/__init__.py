"""The own store: SQLModel tables, the async engine and migrations."""
