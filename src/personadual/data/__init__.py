"""Data: the item schema, PersonaBench, loaders for real sources, and the teacher that writes traces."""

from .schema import DataError, Item, Trace, read_items, write_items

__all__ = ["DataError", "Item", "Trace", "read_items", "write_items"]
