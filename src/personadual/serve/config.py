"""Server settings, with the safe choice as every default (loopback, bounded requests, bounded queue)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


@dataclass
class ServeConfig:
    model_name: str = "personadual"  # the id clients pass as `model` and /v1/models lists
    host: str = "127.0.0.1"  # loopback only; another address exposes the model to the network
    port: int = 8000
    api_key: str | None = None  # when set, /v1/* needs "Authorization: Bearer <key>" (/health stays open)
    max_batch_size: int = 32  # most requests generated as one batch
    batch_wait_ms: float = 5.0  # how long the first request of a batch waits for company
    max_tokens_cap: int = 512  # a request asking for more max_tokens is refused (400)
    default_max_tokens: int = 256  # when the request does not say
    max_request_bytes: int = 1_000_000  # request bodies above this are refused (413)
    max_context_tokens: int | None = None  # prompt + max_tokens limit; None: no check (set from the model)
    max_queue: int = 1024  # requests waiting or running; more are refused (503) instead of piling up

    def __post_init__(self):
        if not self.model_name:
            raise ValueError("model_name must not be empty")
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be in 1..65535, got {self.port}")
        if self.max_batch_size < 1 or self.max_queue < 1:
            raise ValueError("max_batch_size and max_queue must be >= 1")
        if self.batch_wait_ms < 0:
            raise ValueError("batch_wait_ms must be >= 0")
        if not 1 <= self.default_max_tokens <= self.max_tokens_cap:
            raise ValueError("need 1 <= default_max_tokens <= max_tokens_cap")
        if self.max_request_bytes < 1024:
            raise ValueError("max_request_bytes must be >= 1024")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("api_key must not be blank (leave it unset to disable auth)")

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False
