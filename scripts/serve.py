"""Serves dist/ on 127.0.0.1 with the right MIME type for .wasm. Usage: serve.py [PORT]
(SAELAB_QUIET=1 silences the request log.)"""
import functools
import http.server
import os
import sys
from pathlib import Path

port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
root = Path(__file__).resolve().parent.parent / "dist"


class Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        if not os.environ.get("SAELAB_QUIET"):
            super().log_message(*args)


handler = functools.partial(Handler, directory=str(root))
handler.func.extensions_map = {**handler.func.extensions_map, ".wasm": "application/wasm", ".js": "text/javascript"}
with http.server.ThreadingHTTPServer(("127.0.0.1", port), handler) as server:
    print(f"saelab is served at http://127.0.0.1:{port}/  (Ctrl-C to stop)", flush=True)
    server.serve_forever()
