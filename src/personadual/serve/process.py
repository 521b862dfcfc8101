"""Run ``python -m personadual.serve`` in a subprocess on a free loopback port (tests, benchmarks).

    with ServerProcess(model_dir, api_key="k") as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="k")
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ServerProcess:
    def __init__(self, model: str, *args: str, api_key: str | None = None, host: str = "127.0.0.1",
                 port: int | None = None, startup_timeout: float = 120.0, env: dict | None = None):
        self.host, self.port = host, port or free_port(host)
        self.cmd = [sys.executable, "-m", "personadual.serve", "--model", str(model), "--host", host,
                    "--port", str(self.port), "--log-level", "warning", *args]
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **(env or {})}
        self.env.pop("PERSONADUAL_API_KEY", None)
        if api_key is not None:
            self.env["PERSONADUAL_API_KEY"] = api_key  # by env, so the key is not in the process list
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def start(self) -> "ServerProcess":
        import httpx

        self._log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"server not healthy after {self.startup_timeout}s:\n{self.output()}")

    def output(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-5000:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
