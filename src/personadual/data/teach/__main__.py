"""``python -m personadual.data.teach --endpoint URL --model NAME --in FILE --out FILE ...`` (= ``personadual data teach``)."""

import typer

from .commands import teach_command

if __name__ == "__main__":
    typer.run(teach_command)
