"""Data: the item schema, PersonaBench, loaders for real sources, and SFT mixes."""

from .schema import DataError, Item, Trace, read_items, write_items

__all__ = ["DataError", "Item", "Trace", "read_items", "write_items"]
