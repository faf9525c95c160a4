"""Pure planning of an erase commit: subject keys, the MERGE source, mask SQL."""
