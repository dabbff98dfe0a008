"""The HTTP layer: routes requests, enforces auth, maps errors to status codes."""

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .auth import AuthError, require_token
from .storage import Storage

REQUEST_TIMEOUT_SECONDS = 10


class Handler(BaseHTTPRequestHandler):
    storage: Storage
    timeout = REQUEST_TIMEOUT_SECONDS  # a slow client is disconnected after this

    def _authorized(self) -> bool:
        try:
            require_token(dict(self.headers), self.storage.token_hashes())
        except AuthError as error:
            self._reply(401, {"error": str(error)})
            return False
        return True

    def _reply(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if not self._authorized():
            return
        list_name = self.path.strip("/") or "default"
        self._reply(200, {"items": self.storage.items(list_name)})

    def do_POST(self) -> None:
        if not self._authorized():
            return
        length = int(self.headers.get("Content-Length", "0"))
        payload = json.loads(self.rfile.read(length) or b"{}")
        item_id = self.storage.add_item(self.path.strip("/") or "default", payload["text"])
        self._reply(201, {"id": item_id})


def serve(port: int, db_path: str) -> None:
    Handler.storage = Storage(db_path)
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
