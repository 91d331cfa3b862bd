"""A fake Hugging Face Hub: a real HTTP server on 127.0.0.1 that huggingface_hub talks to.

Point ``HF_ENDPOINT`` at :attr:`FakeHub.base_url`. It speaks the routes and headers
huggingface_hub (2.x) reads, as the Hub answers them:

- ``GET /api/models?search=&filter=gguf&sort=downloads&limit=&expand=...``: the search
  (repos tagged gguf whose id contains the text, most downloaded first; with ``expand``
  only those fields, as the Hub does).
- ``GET /api/models/{repo}`` (``?blobs=true``: sizes and LFS sha256 in ``siblings``) and
  ``GET /api/models/{repo}/tree/main?recursive=...``.
- ``HEAD``/``GET /{repo}/resolve/{revision}/{file}``: for a ``.gguf`` (an LFS file) a 302
  to ``/cdn/{sha256}`` with ``X-Repo-Commit``, ``X-Linked-Etag`` (the sha256),
  ``X-Linked-Size`` and ``ETag``; for another file a 200 with ``ETag`` (its git blob id)
  and ``Content-Length``. Errors carry the Hub's ``X-Error-Code``: ``RepoNotFound``
  (401 without a token, 404 with one), ``GatedRepo`` (401 without a token, 403 with one
  that has no access), ``EntryNotFound``, ``RevisionNotFound``.
- ``GET /cdn/{sha256}``: the bytes, with ``Range: bytes=N-`` answered 206.

A test can make the bytes misbehave: :attr:`FakeHub.stall_after` (file name -> bytes:
send that many, then hang until :meth:`FakeHub.release` or the client leaves),
:attr:`FakeHub.drop_after` (file name -> bytes: send that many and close the connection,
once), :attr:`FakeHub.tamper` (file names whose bytes arrive with one byte changed, the
size and the advertised sha256 unchanged), :attr:`FakeHub.throttle_bps` (pace every body). Every request is recorded
(:attr:`FakeHub.requests`), headers included, so a test can see the ``Range`` a resume sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import web
from attrs import define, field, frozen

__all__ = ["FakeHub", "FakeRepo", "HubRequest"]

_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")
_CHUNK = 16 * 1024


@frozen
class HubRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # names lowercased


@define
class FakeRepo:
    """A model repo: file path -> bytes; gated repos open only to ``tokens``."""

    id: str
    files: dict[str, bytes]
    downloads: int = 0
    likes: int = 0
    gated: bool = False
    tokens: frozenset[str] = frozenset()
    tags: tuple[str, ...] = ("gguf",)
    sha: str = field(default="")

    def __attrs_post_init__(self) -> None:
        if not self.sha:
            self.sha = hashlib.sha1(self.id.encode()).hexdigest()


def _git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _is_lfs(path: str) -> bool:
    return path.endswith(".gguf")


class FakeHub:
    """The fake Hub (see the module docstring)."""

    def __init__(self) -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.requests: list[HubRequest] = []
        self.stall_after: dict[str, int] = {}
        self.drop_after: dict[str, int] = {}
        self.throttle_bps: int | None = None
        self.tamper: set[str] = set()
        self._blobs: dict[str, tuple[str, bytes]] = {}  # sha256 -> (file name, bytes)
        self._released = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._lock = threading.Lock()

    # ---- content -----------------------------------------------------------------------
    def add_repo(self, repo_id: str, files: Mapping[str, bytes | Path], **options: Any) -> FakeRepo:
        """Serve ``files`` (bytes, or a path to read) as the repo ``repo_id``."""
        contents = {
            name: data if isinstance(data, bytes) else Path(data).read_bytes()
            for name, data in files.items()
        }
        repo = FakeRepo(repo_id, contents, **options)
        self.repos[repo_id] = repo
        for name, data in contents.items():
            self._blobs[hashlib.sha256(data).hexdigest()] = (name.rsplit("/", 1)[-1], data)
        return repo

    def ranges(self, file_name: str) -> list[str | None]:
        """The ``Range`` header of every GET of ``file_name``'s bytes, in order."""
        with self._lock:
            requests = list(self.requests)
        names = {sha: name for sha, (name, _) in self._blobs.items()}
        return [
            r.headers.get("range")
            for r in requests
            if r.method == "GET"
            and r.path.startswith("/cdn/")
            and names.get(r.path.removeprefix("/cdn/")) == file_name
        ]

    def release(self) -> None:
        """Let every stalled body go on."""
        self._released.set()

    # ---- lifecycle ---------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> FakeHub:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="fake-hub", daemon=True)
        self._thread.start()
        self._port = asyncio.run_coroutine_threadsafe(self._serve(), loop).result(timeout=10)
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._released.set()
        try:
            if self._runner is not None:
                asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop).result(timeout=10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()
            self._loop = self._thread = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def _serve(self) -> int:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(
            app, handler_cancellation=True, shutdown_timeout=1.0, access_log=None
        )
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        return int(runner.addresses[0][1])

    # ---- routes ------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            self.requests.append(
                HubRequest(
                    request.method,
                    request.path,
                    request.query_string,
                    {k.lower(): v for k, v in request.headers.items()},
                )
            )
        path = request.path
        if path == "/api/models" and request.method == "GET":
            return self._search(request)
        if path.startswith("/api/models/") and request.method == "GET":
            return self._api_model(request, path.removeprefix("/api/models/"))
        if path.startswith("/cdn/") and request.method in ("GET", "HEAD"):
            return await self._cdn(request, path.removeprefix("/cdn/"))
        match = re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
        if match and request.method in ("GET", "HEAD"):
            return self._resolve(request, match[1], match[2], match[3])
        return web.json_response({"error": "Not found"}, status=404)

    def _token(self, request: web.Request) -> str | None:
        auth = request.headers.get("authorization", "")
        return auth.removeprefix("Bearer ").strip() or None if auth.startswith("Bearer ") else None

    def _error(
        self, request: web.Request, status: int, code: str, message: str, **headers: str
    ) -> web.Response:
        headers = {"X-Error-Code": code, "X-Error-Message": message, **headers}
        if request.method == "HEAD":
            return web.Response(status=status, headers=headers)
        return web.json_response({"error": message}, status=status, headers=headers)

    def _repo_missing(self, request: web.Request) -> web.Response:
        status = 401 if self._token(request) is None else 404
        return self._error(request, status, "RepoNotFound", "Repository not found")

    def _summary(self, repo: FakeRepo) -> dict[str, Any]:
        return {
            "_id": hashlib.md5(repo.id.encode()).hexdigest()[:24],
            "id": repo.id,
            "modelId": repo.id,
            "likes": repo.likes,
            "downloads": repo.downloads,
            "private": False,
            "gated": "auto" if repo.gated else False,
            "tags": list(repo.tags),
            "library_name": "gguf",
            "createdAt": "2026-01-02T03:04:05.000Z",
            "lastModified": "2026-06-07T08:09:10.000Z",
        }

    def _search(self, request: web.Request) -> web.Response:
        query = request.query.get("search", "").lower()
        filters = request.query.getall("filter", [])
        found = [
            r
            for r in self.repos.values()
            if query in r.id.lower() and all(f in r.tags for f in filters)
        ]
        if request.query.get("sort") == "downloads":
            found.sort(key=lambda r: r.downloads, reverse=True)
        limit = int(request.query.get("limit", "1000"))
        expand = request.query.getall("expand", [])
        items = []
        for repo in found[:limit]:
            summary = self._summary(repo)
            if expand:
                summary = {k: v for k, v in summary.items() if k in ("_id", "id", *expand)}
            items.append(summary)
        return web.json_response(items)

    def _siblings(self, repo: FakeRepo, blobs: bool) -> list[dict[str, Any]]:
        siblings = []
        for name, data in sorted(repo.files.items()):
            sibling: dict[str, Any] = {"rfilename": name}
            if blobs:
                sibling.update(blobId=_git_oid(data), size=len(data))
                if _is_lfs(name):
                    sibling["lfs"] = {
                        "sha256": hashlib.sha256(data).hexdigest(),
                        "size": len(data),
                        "pointerSize": 135,
                    }
            siblings.append(sibling)
        return siblings

    def _api_model(self, request: web.Request, rest: str) -> web.Response:
        parts = rest.split("/")
        repo = self.repos.get("/".join(parts[:2]))
        if repo is None:
            return self._repo_missing(request)
        tail = parts[2:]
        if not tail or tail[0] == "revision":
            info = {
                **self._summary(repo),
                "author": repo.id.split("/")[0],
                "sha": repo.sha,
                "disabled": False,
                "siblings": self._siblings(repo, request.query.get("blobs") == "true"),
                "usedStorage": sum(len(d) for d in repo.files.values()),
            }
            return web.json_response(info)
        if tail[0] == "tree":
            prefix = "/".join(tail[2:])
            entries: list[dict[str, Any]] = []
            for name, data in sorted(repo.files.items()):
                if prefix and not name.startswith(prefix + "/"):
                    continue
                entry: dict[str, Any] = {
                    "type": "file",
                    "oid": _git_oid(data),
                    "size": len(data),
                    "path": name,
                }
                if _is_lfs(name):
                    entry["lfs"] = {
                        "oid": hashlib.sha256(data).hexdigest(),
                        "size": len(data),
                        "pointerSize": 135,
                    }
                entries.append(entry)
            return web.json_response(entries)
        return web.json_response({"error": "Not found"}, status=404)

    def _resolve(
        self, request: web.Request, repo_id: str, revision: str, name: str
    ) -> web.Response:
        repo = self.repos.get(repo_id)
        if repo is None:
            return self._repo_missing(request)
        if revision not in ("main", repo.sha):
            return self._error(request, 404, "RevisionNotFound", "Invalid rev id: " + revision)
        if repo.gated:
            token = self._token(request)
            if token is None:
                return self._error(
                    request,
                    401,
                    "GatedRepo",
                    f"Access to model {repo.id} is restricted. You must have access to it "
                    "and be authenticated to access it. Please log in.",
                )
            if token not in repo.tokens:
                return self._error(
                    request,
                    403,
                    "GatedRepo",
                    f"Access to model {repo.id} is restricted and you are not in the "
                    "authorized list. Visit https://huggingface.co/"
                    + repo.id
                    + " to ask for access.",
                )
        data = repo.files.get(name)
        if data is None:
            return self._error(
                request, 404, "EntryNotFound", "Entry not found", **{"X-Repo-Commit": repo.sha}
            )
        headers = {"X-Repo-Commit": repo.sha, "ETag": f'"{_git_oid(data)}"'}
        if _is_lfs(name):
            sha = hashlib.sha256(data).hexdigest()
            headers.update(
                {
                    "X-Linked-Etag": f'"{sha}"',
                    "X-Linked-Size": str(len(data)),
                    "Location": f"{self.base_url}/cdn/{sha}",
                }
            )
            return web.Response(status=302, headers=headers)
        headers.update({"Accept-Ranges": "bytes", "Content-Length": str(len(data))})
        if request.method == "HEAD":
            return web.Response(status=200, headers=headers)
        return web.Response(status=200, body=data, headers=headers)

    async def _cdn(self, request: web.Request, sha: str) -> web.StreamResponse:
        blob = self._blobs.get(sha)
        if blob is None:
            return web.Response(status=404, text="NoSuchKey")
        name, data = blob
        start = 0
        status = 200
        match = _RANGE.match(request.headers.get("range", ""))
        if match:
            start = int(match[1])
            if start >= len(data):
                return web.Response(status=416, headers={"Content-Range": f"bytes */{len(data)}"})
            status = 206
        if name in self.tamper:
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        body = data[start:]
        headers = {
            "Content-Type": "application/octet-stream",
            "ETag": f'"{sha}"',
            "Accept-Ranges": "bytes",
            "Content-Length": str(len(body)),
        }
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        response = web.StreamResponse(status=status, headers=headers)
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        stall = self.stall_after.get(name)
        with self._lock:
            drop = self.drop_after.pop(name, None)
        sent = 0
        while sent < len(body):
            limit = len(body)
            if stall is not None:
                limit = min(limit, stall)
            if drop is not None:
                limit = min(limit, drop)
            if sent >= limit:
                if drop is not None and sent >= drop:
                    if request.transport is not None:
                        request.transport.close()
                    return response
                # Stalled: hold the connection open until released (or the client leaves).
                while not self._released.is_set():  # noqa: ASYNC110  # a threading.Event
                    await asyncio.sleep(0.02)
                stall = None
                continue
            piece = body[sent : min(sent + _CHUNK, limit)]
            await response.write(piece)
            sent += len(piece)
            if self.throttle_bps:
                await asyncio.sleep(len(piece) / self.throttle_bps)
        await response.write_eof()
        return response
