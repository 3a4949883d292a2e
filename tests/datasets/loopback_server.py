"""A loopback HTTP server with Range support for the datasets tests (imported by them as a fixture)."""

from __future__ import annotations

import http.server
import re
import threading

import pytest


class FileServer:
    """Serves ``files`` (name -> bytes) on 127.0.0.1; records each request's path and Range header
    (``requests``) and the body bytes each response sent (``sent``).

    ``cut[name] = n``: the next response for ``name`` sends only ``n`` bytes of its body, then closes
    the connection (once). ``ignore_range``: answer every request 200 with the whole file."""

    def __init__(self):
        self.files, self.cut, self.requests, self.sent, self.ignore_range = {}, {}, [], [], False
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                server.requests.append((name, self.headers.get("Range")))
                if name not in server.files:
                    self.send_error(404)
                    return
                data = server.files[name]
                m = re.match(r"^bytes=(\d+)-$", self.headers.get("Range") or "")
                start = int(m.group(1)) if m and not server.ignore_range else 0
                if start >= len(data) and m and not server.ignore_range:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.end_headers()
                    return
                body = data[start:]
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                n = server.cut.pop(name, None)
                self.wfile.write(body if n is None else body[:n])
                server.sent.append(len(body) if n is None else min(n, len(body)))
                self.wfile.flush()
                self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = FileServer()
    yield s
    s.close()
