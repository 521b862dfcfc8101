"""PersonaBench: the embedded, procedurally generated persona-interference benchmark."""

from .build import BenchConfig, build, preferred_mode, stats, write

__all__ = ["BenchConfig", "build", "preferred_mode", "stats", "write"]
