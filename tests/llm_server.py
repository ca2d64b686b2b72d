"""A tiny OpenAI-compatible chat-completions server on 127.0.0.1 for tests.

``server.mode`` picks the behaviour: "good" (a faithful rewording), "unfaithful" (a
count and place that fit nothing), "malformed" (prose, not JSON), "429"/"500" (that
status for the first ``server.failures`` calls, then good), "slow" (waits
``server.delay`` seconds for the first ``server.failures`` calls, then good), "401", and
the 200 answers that are not chat completions: "body_text", "body_badjson",
"body_nochoices", "body_emptychoices", "body_list".
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BODIES = {
    "body_text": ("text/plain", b"Hello from a web server, not an LLM"),
    "body_badjson": ("application/json", b'{"choices": [ {"message": '),
    "body_nochoices": ("application/json", b'{"id": "x", "object": "chat.completion"}'),
    "body_emptychoices": ("application/json", b'{"id": "x", "object": "chat.completion", "choices": []}'),
    "body_list": ("application/json", b"[1, 2, 3]"),
}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep test output clean
        pass

    def do_POST(self):
        server = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with server.lock:
            server.calls += 1
            call = server.calls
            server.auth_headers.append(self.headers.get("Authorization", ""))
        sentence = re.search(r"Expression: (.*)$", body["messages"][-1]["content"]).group(1)
        mode, failing = server.mode, call <= server.failures
        if mode in ("429", "500") and failing:
            return self._send(int(mode), {"error": {"message": f"status {mode}", "type": "test"}})
        if mode in BODIES:
            content_type, data = BODIES[mode]
            return self._send_raw(200, content_type, data)
        if mode == "401":
            return self._send(401, {"error": {"message": "invalid api key", "type": "auth"}})
        if mode == "slow" and failing:
            time.sleep(server.delay)
        if mode == "unfaithful":
            content = json.dumps({"paraphrase": "the seven anomalies in the top left corner"})
        elif mode == "malformed":
            content = f"Sure! Here is a nicer version: {sentence}"
        else:
            content = json.dumps({"paraphrase": f"look at {sentence}."})
        self._send(200, {
            "id": f"test-{call}", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        })  # fmt: skip

    def _send(self, status, payload):
        self._send_raw(status, "application/json", json.dumps(payload).encode())

    def _send_raw(self, status, content_type, data):
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test)


class FakeLLM:
    def __init__(self):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.lock = threading.Lock()
        self.reset("good")
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    @property
    def calls(self) -> int:
        return self.httpd.calls

    @property
    def auth_headers(self) -> list[str]:
        return self.httpd.auth_headers

    def reset(self, mode: str, failures: int = 0, delay: float = 0.0) -> None:
        self.httpd.mode, self.httpd.failures, self.httpd.delay = mode, failures, delay
        self.httpd.calls = 0
        self.httpd.auth_headers = []

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
