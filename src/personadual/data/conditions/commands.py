"""``personadual data conditions`` (work in progress)."""

import typer


def conditions_command():
    """Build the paired persona-condition grid for multiple-choice items."""
    raise typer.Exit(2)
