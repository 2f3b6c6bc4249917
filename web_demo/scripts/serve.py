"""Serves the built page (web_demo/dist) on 127.0.0.1, with extra folders mounted under URL prefixes.

Used by tests/test_web_demo.py and bench/web_demo.py (models and faces stay where they are, nothing is copied into
the build); usable by hand instead of ``npm run preview``:

    python web_demo/scripts/serve.py web_demo/dist --mount /models/=exports/default --port 8000

Only the standard library: .wasm is served as application/wasm (WebAssembly streaming compilation needs it).
"""
from __future__ import annotations

import argparse
import functools
import http.server
import pathlib
import sys
import threading
import urllib.parse


def make_server(dist, mounts=None, port: int = 0) -> http.server.ThreadingHTTPServer:
    """A server for ``dist`` with ``mounts`` = {"/prefix/": folder}; port 0 picks a free one."""
    dist = pathlib.Path(dist)
    if not (dist / "index.html").is_file():
        raise ValueError(f"{dist}: no index.html; build the page first (cd web_demo && npm install && npm run build)")
    folders = {}
    for prefix, folder in (mounts or {}).items():
        if not (prefix.startswith("/") and prefix.endswith("/")):
            raise ValueError(f"--mount: prefix must start and end with '/', got {prefix!r}")
        if not pathlib.Path(folder).is_dir():
            raise ValueError(f"--mount {prefix}: folder {folder} not found")
        folders[prefix] = pathlib.Path(folder)

    class Handler(http.server.SimpleHTTPRequestHandler):
        extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".wasm": "application/wasm",
                          ".js": "text/javascript", ".mjs": "text/javascript", ".json": "application/json"}

        def translate_path(self, path):
            for prefix, folder in folders.items():
                if path.startswith(prefix):
                    rel = urllib.parse.unquote(path[len(prefix):].split("?")[0].split("#")[0])
                    # no way out of the mounted folder: '.', '..' and empty parts are dropped
                    parts = [part for part in rel.split("/") if part not in ("", ".", "..")]
                    return str(folder.joinpath(*parts))
            return super().translate_path(path)

        def log_message(self, *args):
            pass

    return http.server.ThreadingHTTPServer(("127.0.0.1", port), functools.partial(Handler, directory=str(dist)))


def serve_in_thread(dist, mounts=None):
    """(base URL, stop function): the server runs in a daemon thread."""
    httpd = make_server(dist, mounts)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()

    def stop():
        httpd.shutdown()
        httpd.server_close()
    return f"http://127.0.0.1:{httpd.server_address[1]}/", stop


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dist", help="the built page (web_demo/dist, from npm run build)")
    p.add_argument("--mount", action="append", default=[], metavar="/PREFIX/=DIR",
                   help="serve DIR under URL /PREFIX/ (repeatable), e.g. /models/=exports/default")
    p.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (default: 8000; 0 = any free port)")
    args = p.parse_args(argv)
    try:
        mounts = dict(m.split("=", 1) for m in args.mount)
    except ValueError:
        print(f"serve.py: --mount expects /PREFIX/=DIR, got {args.mount}", file=sys.stderr)
        return 2
    try:
        httpd = make_server(args.dist, mounts, args.port)
    except (ValueError, OSError) as exc:
        print(f"serve.py: {exc}", file=sys.stderr)
        return 2
    print(f"serving {args.dist} on http://127.0.0.1:{httpd.server_address[1]}/ (Ctrl-C stops)")
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
