"""``python -m personadual.serve --model DIR [--host --port --api-key --max-batch-size --batch-wait-ms --backend]``."""

import os

import typer

from .commands import serve_command

if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    typer.run(serve_command)
