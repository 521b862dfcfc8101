"""An OpenAI-compatible server for a PersonaDual model, and an interactive terminal chat.

- `config`: `ServeConfig`, every knob of the server with its safety default.
- `schemas`: the request model (pydantic) and the OpenAI error shape (`APIError`).
- `prompting`: chat messages + persona -> the model's prompt; a `Generation` -> response bodies.
- `batcher`: micro-batching: concurrent requests become one `Engine.generate` call, in a worker thread.
- `app`: `create_app(engine, config)`, the FastAPI app (`/v1/chat/completions`, `/v1/models`, `/health`).
- `process`: start/stop a server in a subprocess (tests, benchmarks).
- `commands`: the ``personadual serve`` and ``personadual chat`` commands.

Heavy imports (torch, transformers, fastapi) happen inside functions, so importing this package is cheap.
"""
