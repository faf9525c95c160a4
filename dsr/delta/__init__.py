"""The Delta layer: the one access layer for reads, storage, dsr's own tables, Delta feature rules."""
