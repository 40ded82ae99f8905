"""One revision per schema version; the file of version n + 1 runs `MIGRATIONS[n]`."""
