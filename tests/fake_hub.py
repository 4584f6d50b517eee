"""A stand-in for the Hugging Face Hub and plain file hosts, on 127.0.0.1, for pull tests.

It serves the two endpoints ``huggingface_hub`` and deskai's downloader use:

    GET /api/models/USER/REPO[/revision/REV]?blobs=true   model info: siblings with LFS sha256
    GET|HEAD /USER/REPO/resolve/REV/FILE                  the file, with Range support
    GET|HEAD /files/NAME                                  a direct URL (and NAME.sha256)

and records every request (method, path, Range header) so tests can prove a resume. A
``throttle`` (bytes per second) slows downloads so a test can kill one halfway; ``corrupt``
serves different bytes than the published sha256 describes.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from conftest import write_tiny_gguf

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def write_gguf(path: Path, *, megabytes: int = 2, arch: str = "llama") -> Path:
    """A valid GGUF of roughly ``megabytes`` (f32 tensors), big enough to interrupt."""
    return write_tiny_gguf(path, arch=arch, n_tensors=megabytes * 4, side=256)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Hosted:
    data: bytes
    published_sha256: str | None  # what the API claims; None: not LFS


@dataclass
class FakeHub:
    repos: dict[str, dict[str, Hosted]] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    throttle: float | None = None      # bytes per second for file bodies
    corrupt: set[str] = field(default_factory=set)  # paths served with flipped bytes
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    url: str = ""

    def add_repo_file(self, repo: str, filename: str, data: bytes, *,
                      lfs: bool = True) -> None:
        self.repos.setdefault(repo, {})[filename] = Hosted(data, sha256_hex(data) if lfs
                                                           else None)

    def file_requests(self, fragment: str) -> list[tuple[str, str, str | None]]:
        return [r for r in self.requests if r[0] == "GET" and fragment in r[1]
                and not r[1].endswith(".sha256")]

    def start(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            state = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    state: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_GET(self) -> None:
        self._route(head=False)

    def _route(self, *, head: bool) -> None:
        path = self.path.split("?", 1)[0]
        self.state.requests.append((self.command, path, self.headers.get("Range")))
        if path.startswith("/api/models/"):
            return self._model_info(path.removeprefix("/api/models/"))
        if path.startswith("/files/"):
            data = self.state.files.get(path.removeprefix("/files/"))
            return self._send_file(path, data, head=head)
        parts = path.strip("/").split("/")
        if len(parts) >= 5 and parts[2] == "resolve":
            repo, filename = "/".join(parts[:2]), "/".join(parts[4:])
            hosted = self.state.repos.get(repo, {}).get(filename)
            return self._send_file(path, hosted.data if hosted else None, head=head)
        self._json(404, {"error": "not found"})

    def _model_info(self, rest: str) -> None:
        repo = "/".join(rest.split("/")[:2])
        files = self.state.repos.get(repo)
        if files is None:
            return self._json(404, {"error": "Repository not found"},
                              {"X-Error-Code": "RepoNotFound"})
        siblings = []
        for filename, hosted in files.items():
            sibling: dict[str, object] = {"rfilename": filename, "size": len(hosted.data)}
            if hosted.published_sha256:
                sibling["lfs"] = {"sha256": hosted.published_sha256, "size": len(hosted.data),
                                  "pointerSize": 134}
            siblings.append(sibling)
        self._json(200, {"id": repo, "modelId": repo, "sha": COMMIT, "private": False,
                         "siblings": siblings})

    def _send_file(self, path: str, data: bytes | None, *, head: bool) -> None:
        if data is None:
            return self._json(404, {"error": "Entry not found"},
                              {"X-Error-Code": "EntryNotFound"})
        if path in self.state.corrupt or any(path.endswith(c) for c in self.state.corrupt):
            data = bytes(b ^ 0xFF for b in data[:64]) + data[64:]
        start = self._range_start(len(data))
        if start is None:
            return self._json(416, {"error": "range"}, {"Content-Range": f"bytes */{len(data)}"})
        body = data[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{sha256_hex(data)}"')
        self.send_header("X-Repo-Commit", COMMIT)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if not head:
            self._write_slowly(body)

    def _range_start(self, size: int) -> int | None:
        header = self.headers.get("Range")
        if not header:
            return 0
        start = int(header.removeprefix("bytes=").split("-")[0])
        return start if start < size else None

    def _write_slowly(self, body: bytes) -> None:
        step = 32 * 1024
        try:
            for offset in range(0, len(body), step):
                self.wfile.write(body[offset:offset + step])
                if self.state.throttle:
                    time.sleep(step / self.state.throttle)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client was killed mid-download: exactly what the tests do

    def _json(self, status: int, payload: object, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)
