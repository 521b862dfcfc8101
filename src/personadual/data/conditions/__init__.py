"""Persona conditions for any multiple-choice items (work in progress)."""
