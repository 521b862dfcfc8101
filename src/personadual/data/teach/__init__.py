"""Teacher traces over any OpenAI-compatible chat endpoint (``personadual data teach``).

- `client`: async chat client on the official openai client: a request limit, its retries, clear errors.
- `traces`: the prompts (``prompts/*.txt``), reading a reply into a `Trace`, the paper's labelling.
- `teach`: `TeachConfig` and `teach(cfg)`, the resumable run (rows appended with `personadual.files.Appender`).
- `commands`: the Typer command.
"""
