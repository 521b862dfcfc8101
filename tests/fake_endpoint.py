"""A scripted OpenAI-compatible chat endpoint on loopback, for the clients' tests (teacher, personas, eval).

``FakeEndpoint(script)``: ``script(body) -> (status, text)`` or ``(status, text, headers)``; a 200's
text becomes the reply's ``content`` in a complete chat.completion body, another status's text the
error message in OpenAI's error shape. Every request body is recorded in ``requests`` (in arrival
order). ``models`` lists what ``GET /v1/models`` answers (None: 404, as some servers do); ``delay``
slows every reply, so a test can kill a client mid-run.
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeEndpoint:
    def __init__(self, script, models=None, delay: float = 0.0):
        self.script, self.requests, self.lock = script, [], threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, payload: dict, headers: dict | None = None):
                data = json.dumps(payload).encode()
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", "Content-Length": str(len(data)),
                             **(headers or {})}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # /v1/models, when the fake lists models
                if models is not None and self.path.endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in models]})
                else:
                    self._send(404, {"error": {"message": "Not Found"}})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake.lock:
                    fake.requests.append(body)
                time.sleep(delay)
                status, text, *rest = fake.script(body)
                payload = ({"id": "c1", "object": "chat.completion", "created": 0, "model": body.get("model", "m"),
                            "choices": [{"index": 0, "finish_reason": "stop",
                                         "message": {"role": "assistant", "content": text}}],
                            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
                           if status == 200 else {"error": {"message": text, "type": "x", "param": None, "code": None}})
                self._send(status, payload, rest[0] if rest else None)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
