"""PersonaDual: one model, two reasoning modes; use the persona when it helps, set it aside when not."""

__version__ = "0.1.0"
