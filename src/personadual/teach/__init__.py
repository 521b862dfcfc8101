"""Teacher traces over any OpenAI-compatible chat endpoint (``personadual data teach``).

- `client`: async chat client with a request limit, retries and exponential backoff.
- `traces`: the prompts (``prompts/*.txt``), reading a reply into a `Trace`, the paper's labelling.
- `store`: append-only JSONL that a kill cannot corrupt (fsync per row, torn-line repair).
- `teach`: `TeachConfig` and `teach(cfg)`, the resumable run.
- `commands`: the Typer command.
"""
