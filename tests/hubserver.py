"""A small fake Hugging Face Hub for tests: a stdlib HTTP server on 127.0.0.1 that speaks the Hub's protocol.

The test machines reach no Hub, and no Hub-compatible server that accepts uploads installs from a registry
(see ``../shared/notes/hub-testing.md``). So the Hub tests talk to this loopback server instead. It runs in a
thread of the test process, keeps every repository in memory, and answers the routes that
``huggingface_hub`` 2.4 and ``transformers`` 5.24 actually call when they create a repo, upload files (regular
files inline in the commit, large ones through the Git LFS "basic" transfer), list, download, branch, and
report missing repos, revisions and files.

What this server deliberately does NOT do:
- Xet storage. With ``hf_xet`` installed the client uploads every LFS file through Xet unless
  ``HF_HUB_DISABLE_XET=1``; the tests switch Xet off, so the real Hub's Xet upload path is never exercised.
- Authentication beyond "a bearer token was sent", pull requests, tags, gated repos, spaces' runtimes,
  multipart LFS uploads, pagination, redirects to a CDN, or git itself (commits here are records, not git
  objects, although file ids follow git's and Git LFS' rules so cache paths look like the real ones).

It is a contract test against the pinned client versions, not proof of compatibility with the real Hub.
Usage::

    hub = FakeHub(lfs_threshold=10_000).start()   # hub.url == "http://127.0.0.1:PORT"
    ...                                           # point HF_ENDPOINT at hub.url
    hub.stop()                                    # closes the socket and joins every server thread
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import socket
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

# The URL prefix of each repo type in file URLs (models have none), and its name in ``/api/{type}s/``.
REPO_TYPE_PREFIXES = {"datasets": "dataset", "spaces": "space"}
API_REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
# Files that always go through LFS, whatever their size (a short version of the Hub's default .gitattributes).
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx")
GITATTRIBUTES = "".join(f"*{s} filter=lfs diff=lfs merge=lfs -text\n" for s in LFS_SUFFIXES)


def git_blob_sha1(data: bytes) -> str:
    """Git's object id of a blob: sha1 over ``b"blob <size>\\0"`` + content (what the Hub calls ``oid``)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The Git LFS pointer file that git stores in place of an LFS file."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


class HubError(Exception):
    """An HTTP error answer: status, the Hub's ``X-Error-Code`` (which the client maps to an exception), text."""

    def __init__(self, status: int, message: str, code: str | None = None, extra: dict | None = None,
                 headers: dict | None = None):  # fmt: skip
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.extra, self.headers = extra or {}, headers or {}


@dataclass(frozen=True)
class RepoEntry:
    """One file in one commit: its content is ``FakeHub.blobs[sha256]``."""

    sha256: str
    size: int
    lfs: bool
    git_oid: str  # git's blob id: of the content for a regular file, of the LFS pointer for an LFS file


@dataclass
class Commit:
    oid: str
    parent: str | None
    title: str
    date: str
    files: dict[str, RepoEntry]


@dataclass
class Repo:
    repo_id: str
    repo_type: str
    private: bool
    branches: dict[str, str] = field(default_factory=dict)  # branch name -> commit oid
    commits: dict[str, Commit] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit:
        """The commit a branch name or a full commit id points at (404 RevisionNotFound otherwise)."""
        oid = self.branches.get(revision, revision)
        if oid not in self.commits:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return self.commits[oid]


class FakeHub:
    """The in-memory Hub state plus the HTTP server that serves it (see the module docstring)."""

    def __init__(self, lfs_threshold: int = 10_000, user: str = "testuser") -> None:
        self.lfs_threshold = lfs_threshold  # files of at least this many bytes are uploaded through LFS
        self.user = user  # the namespace of repo ids given without one
        self.repos: dict[tuple[str, str], Repo] = {}
        self.blobs: dict[str, bytes] = {}  # sha256 -> content, for regular files and uploaded LFS objects
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status) of every request served
        self.lock = threading.RLock()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._commit_counter = 0

    # --- lifecycle -------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("FakeHub is not running: call start() first")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeHub:
        """Bind 127.0.0.1 on a free port and serve in a background thread."""
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.hub = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close kept-alive client connections, and join every server thread."""
        if self._httpd is None:
            return
        self._httpd.shutdown()  # returns once serve_forever has exited
        self._httpd.close_connections()
        self._httpd.server_close()  # joins the per-connection threads (daemon_threads is False)
        assert self._thread is not None
        self._thread.join(timeout=10)
        self._httpd = None

    # --- repositories --------------------------------------------------------------------------------
    def create_repo(self, repo_id: str, repo_type: str = "model", private: bool = False) -> Repo:
        """Create a repo whose ``main`` branch holds one commit with a ``.gitattributes`` (as the Hub does)."""
        with self.lock:
            if (repo_type, repo_id) in self.repos:
                raise HubError(
                    409, "You already created this repo", extra={"url": self.repo_url(repo_id, repo_type)}
                )
            repo = Repo(repo_id, repo_type, private)
            self.repos[(repo_type, repo_id)] = repo
            self.commit(repo, "main", "initial commit", [("file", ".gitattributes", GITATTRIBUTES.encode())])
            return repo

    def get_repo(self, repo_type: str, repo_id: str) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            raise HubError(404, f"Repository not found: {repo_id}", "RepoNotFound")
        return repo

    def repo_url(self, repo_id: str, repo_type: str) -> str:
        prefix = {"model": ""}.get(repo_type, f"{repo_type}s/")
        return f"{self.url}/{prefix}{repo_id}"

    def commit(
        self, repo: Repo, branch: str, title: str, ops: list[tuple], parent: str | None = None
    ) -> Commit:
        """Apply ``ops`` — ("file", path, bytes), ("lfsFile", path, sha256), ("deletedFile"|"deletedFolder", path) —
        on top of ``branch`` and move the branch to the new commit."""
        with self.lock:
            if branch not in repo.branches and repo.commits:
                if branch in repo.commits:
                    raise HubError(400, f"Cannot commit to a commit id ({branch}): use a branch name")
                raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            head = repo.branches.get(branch)
            if parent is not None and parent != head:
                raise HubError(412, f"parentCommit {parent} is not the head of {branch} ({head})")
            files = dict(repo.commits[head].files) if head else {}
            for kind, path, *rest in ops:
                if kind == "file":
                    data = rest[0]
                    sha = hashlib.sha256(data).hexdigest()
                    self.blobs[sha] = data
                    files[path] = RepoEntry(sha, len(data), lfs=False, git_oid=git_blob_sha1(data))
                elif kind == "lfsFile":
                    sha = rest[0]
                    if sha not in self.blobs:
                        raise HubError(422, f"LFS object {sha} for {path} was never uploaded")
                    size = len(self.blobs[sha])
                    files[path] = RepoEntry(
                        sha, size, lfs=True, git_oid=git_blob_sha1(lfs_pointer(sha, size))
                    )
                elif kind == "deletedFile":
                    if files.pop(path, None) is None:
                        raise HubError(404, f"Cannot delete {path}: no such file", "EntryNotFound")
                elif kind == "deletedFolder":
                    prefix = path.rstrip("/") + "/"
                    files = {p: e for p, e in files.items() if not p.startswith(prefix)}
                else:
                    raise HubError(400, f"Unknown commit operation {kind!r}")
            self._commit_counter += 1
            seed = f"{repo.repo_id}\n{head}\n{title}\n{self._commit_counter}\n" + "\n".join(
                f"{p} {e.sha256}" for p, e in sorted(files.items())
            )
            oid = hashlib.sha1(seed.encode()).hexdigest()
            date = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
            repo.commits[oid] = Commit(oid, head, title, date, files)
            repo.branches[branch] = oid
            return repo.commits[oid]


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # so server_close() joins the handler threads
    hub: FakeHub

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def close_connections(self) -> None:
        """Wake handler threads that wait on kept-alive connections, so they can finish."""
        with self.connections_lock:
            for conn in self.connections:
                with contextlib.suppress(OSError):  # already closed by the client
                    conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client's connection pool expects
    timeout = 30  # an idle kept-alive connection is closed after this many seconds
    server: _Server

    # --- plumbing -------------------------------------------------------------------------------------
    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the stdlib's signature
        pass  # requests are recorded in FakeHub.requests instead of printed

    def do_GET(self) -> None:
        self._dispatch()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_GET

    def _read_body(self) -> bytes:
        """The whole request body: always read, even for errors, so the next request on this connection parses."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailer lines
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()  # the CRLF after each chunk
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, body: bytes | dict | list = b"", headers: dict | None = None) -> None:
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        # Recorded before the response is written: once a client has its answer, the record is already there
        # (recording afterwards let a loaded machine's test read the list one request short).
        self.server.hub.requests.append((self.command, self.path, status))
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, str(value))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _dispatch(self) -> None:
        body = self._read_body()
        url = urlsplit(self.path)
        self.query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        # Revisions and folder paths arrive percent-encoded ("feature%2Fx"): unquote per segment.
        segments = [unquote(s) for s in url.path.split("/")[1:]]
        try:
            if segments[:1] == ["api"]:
                self._api(segments[1:], body)
            elif segments[:1] == ["_lfs"]:
                self._lfs_object(segments[1:], body)
            else:
                self._files(segments, body)
        except HubError as err:
            headers = {"X-Error-Message": err.message, **err.headers}
            if err.code:
                headers["X-Error-Code"] = err.code
            self._send(err.status, {"error": err.message, **err.extra}, headers)
        except Exception as err:  # a bug in this server, or a request it cannot parse: say so, keep serving
            message = f"fake hub: {type(err).__name__}: {err}"
            self._send(500, {"error": message}, {"X-Error-Message": message.replace("\n", " ")})

    # --- /api/... ------------------------------------------------------------------------------------
    def _api(self, seg: list[str], body: bytes) -> None:
        hub, method = self.server.hub, self.command
        if seg == ["repos", "create"] and method == "POST":
            self._require_token()
            req = json.loads(body)
            repo_id = f"{req.get('organization') or hub.user}/{req['name']}"
            repo_type = req.get("type") or "model"
            private = req.get("private") or req.get("visibility") == "private"
            hub.create_repo(repo_id, repo_type, bool(private))
            return self._send(200, {"url": hub.repo_url(repo_id, repo_type), "name": repo_id, "id": repo_id})
        if seg == ["validate-yaml"] and method == "POST":
            return self._send(200, {"errors": [], "warnings": []})
        if seg == ["whoami-v2"] and method == "GET":
            self._require_token()
            return self._send(200, {"type": "user", "name": hub.user, "fullname": hub.user, "orgs": []})
        if len(seg) >= 3 and seg[0] in API_REPO_TYPES:
            repo = hub.get_repo(API_REPO_TYPES[seg[0]], f"{seg[1]}/{seg[2]}")
            return self._repo_api(repo, seg[3:], body)
        raise HubError(404, f"fake hub: no route for {method} {self.path}")

    def _require_token(self) -> None:
        if not self.headers.get("Authorization", "").startswith("Bearer "):
            raise HubError(401, "Invalid credentials in Authorization header")

    def _repo_api(self, repo: Repo, rest: list[str], body: bytes) -> None:
        hub, method = self.server.hub, self.command
        route = rest[0] if rest else ""
        if method == "GET" and (not rest or route == "revision"):
            commit = repo.resolve(rest[1] if rest else "main")
            return self._send(200, self._repo_info(repo, commit))
        if method == "GET" and route == "refs":
            branches = [
                {"name": b, "ref": f"refs/heads/{b}", "targetCommit": oid} for b, oid in repo.branches.items()
            ]
            return self._send(200, {"branches": branches, "converts": [], "tags": [], "pullRequests": []})
        if method == "POST" and route == "branch":
            self._require_token()
            start = (json.loads(body) if body else {}).get("startingPoint") or "main"
            with hub.lock:
                if rest[1] in repo.branches:
                    raise HubError(409, f"Branch {rest[1]} already exists")
                repo.branches[rest[1]] = repo.resolve(start).oid
            return self._send(200, {})
        if method == "GET" and route == "tree":
            return self._send(200, self._tree(repo.resolve(rest[1]), "/".join(rest[2:])))
        if method == "POST" and route == "preupload":
            self._require_token()
            files = repo.resolve(rest[1]).files
            answers = []
            for f in json.loads(body)["files"]:
                lfs = f["size"] >= hub.lfs_threshold or f["path"].endswith(LFS_SUFFIXES)
                entry = files.get(f["path"])
                oid = None if entry is None else (entry.sha256 if entry.lfs else entry.git_oid)
                mode = "lfs" if lfs else "regular"
                answers.append({"path": f["path"], "uploadMode": mode, "shouldIgnore": False, "oid": oid})
            return self._send(200, {"files": answers})
        if method == "POST" and route == "commit":
            self._require_token()
            if self.query.get("create_pr"):
                raise HubError(400, "fake hub: pull requests are not supported")
            return self._commit(repo, rest[1], body)
        raise HubError(404, f"fake hub: no route for {method} {self.path}")

    def _repo_info(self, repo: Repo, commit: Commit) -> dict:
        siblings = []
        for path, entry in sorted(commit.files.items()):
            sibling: dict = {"rfilename": path}
            if self.query.get("blobs", "").lower() == "true":
                sibling.update(size=entry.size, blobId=entry.git_oid)
                if entry.lfs:
                    pointer_size = len(lfs_pointer(entry.sha256, entry.size))
                    sibling["lfs"] = {"size": entry.size, "sha256": entry.sha256, "pointerSize": pointer_size}
            siblings.append(sibling)
        author = repo.repo_id.split("/")[0]
        return {"_id": repo.repo_id, "id": repo.repo_id, "author": author, "sha": commit.oid,
                "private": repo.private, "lastModified": commit.date, "tags": [], "siblings": siblings}  # fmt: skip

    def _tree(self, commit: Commit, folder: str) -> list[dict]:
        recursive = self.query.get("recursive", "").lower() in ("1", "true")
        prefix = folder.rstrip("/") + "/" if folder else ""
        entries: dict[str, dict] = {}
        for path, entry in sorted(commit.files.items()):
            if not path.startswith(prefix):
                continue
            parts = path[len(prefix) :].split("/")
            # folders on the way to this file (only the first level unless recursive)
            for depth in range(1, len(parts) if recursive else min(2, len(parts))):
                sub = prefix + "/".join(parts[:depth])
                entries.setdefault(sub, {"type": "directory", "path": sub, "size": 0,
                                         "oid": hashlib.sha1(sub.encode()).hexdigest()})  # fmt: skip
            if recursive or len(parts) == 1:
                item = {"type": "file", "path": path, "size": entry.size, "oid": entry.git_oid}
                if entry.lfs:
                    pointer_size = len(lfs_pointer(entry.sha256, entry.size))
                    item["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": pointer_size}
                entries[path] = item
        if folder and not entries:
            raise HubError(404, f"{folder} does not exist on {commit.oid}", "EntryNotFound")
        return list(entries.values())

    def _commit(self, repo: Repo, revision: str, body: bytes) -> None:
        title, parent, ops = "", None, []
        for line in body.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                title, parent = value.get("summary", ""), value.get("parentCommit")
            elif key == "file":
                if value.get("encoding", "base64") != "base64":
                    raise HubError(400, f"fake hub: unsupported encoding {value.get('encoding')!r}")
                ops.append(("file", value["path"], base64.b64decode(value["content"])))
            elif key == "lfsFile":
                ops.append(("lfsFile", value["path"], value["oid"]))
            elif key in ("deletedFile", "deletedFolder"):
                ops.append((key, value["path"]))
            else:
                raise HubError(400, f"fake hub: unsupported commit line {key!r}")
        commit = self.server.hub.commit(repo, revision, title, ops, parent)
        url = f"{self.server.hub.repo_url(repo.repo_id, repo.repo_type)}/commit/{commit.oid}"
        self._send(200, {"commitUrl": url, "commitOid": commit.oid, "pullRequestUrl": None})

    # --- LFS: the batch API and the object store behind the hrefs it hands out -----------------------
    def _lfs_batch(self, body: bytes) -> None:
        self._require_token()
        req = json.loads(body)
        if req.get("operation") != "upload" or "basic" not in req.get("transfers", ["basic"]):
            raise HubError(400, "fake hub: only LFS uploads with the 'basic' transfer are supported")
        objects = []
        for obj in req["objects"]:
            answer = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            # Objects already stored get no "actions", and the client skips their upload.
            if obj["oid"] not in self.server.hub.blobs:
                href = f"{self.server.hub.url}/_lfs/{obj['oid']}"
                verify = f"{self.server.hub.url}/_lfs/verify"
                answer["actions"] = {"upload": {"href": href}, "verify": {"href": verify}}
            objects.append(answer)
        self._send(
            200, {"transfer": "basic", "objects": objects}, {"Content-Type": "application/vnd.git-lfs+json"}
        )

    def _lfs_object(self, seg: list[str], body: bytes) -> None:
        blobs = self.server.hub.blobs
        if self.command == "PUT" and len(seg) == 1:
            if hashlib.sha256(body).hexdigest() != seg[0]:
                raise HubError(400, f"LFS upload: content does not hash to {seg[0]}")
            blobs[seg[0]] = body
            return self._send(200)
        if self.command == "POST" and seg == ["verify"]:
            obj = json.loads(body)
            if obj["oid"] not in blobs or len(blobs[obj["oid"]]) != obj["size"]:
                raise HubError(404, f"LFS object {obj['oid']} not found")
            return self._send(200, {})
        raise HubError(404, f"fake hub: no route for {self.command} {self.path}")

    # --- /{ns}/{name}/resolve/{rev}/{path} and /{ns}/{name}.git/info/lfs/objects/batch -------------------
    def _files(self, seg: list[str], body: bytes) -> None:
        repo_type = REPO_TYPE_PREFIXES.get(seg[0], "model")
        if repo_type != "model":
            seg = seg[1:]
        if len(seg) == 6 and seg[1].endswith(".git") and seg[2:] == ["info", "lfs", "objects", "batch"]:
            self.server.hub.get_repo(repo_type, f"{seg[0]}/{seg[1][:-4]}")
            return self._lfs_batch(body)
        if len(seg) >= 5 and seg[2] == "resolve" and self.command in ("GET", "HEAD"):
            repo = self.server.hub.get_repo(repo_type, f"{seg[0]}/{seg[1]}")
            commit = repo.resolve(seg[3])
            return self._resolve(commit, "/".join(seg[4:]))
        raise HubError(404, f"fake hub: no route for {self.command} {self.path}")

    def _resolve(self, commit: Commit, path: str) -> None:
        entry = commit.files.get(path)
        if entry is None:
            raise HubError(
                404, f"Entry not found: {path}", "EntryNotFound", headers={"X-Repo-Commit": commit.oid}
            )
        data = self.server.hub.blobs[entry.sha256]
        headers = {"X-Repo-Commit": commit.oid, "Content-Type": "application/octet-stream",
                   "ETag": f'"{entry.git_oid}"', "Accept-Ranges": "bytes"}  # fmt: skip
        if entry.lfs:  # the real Hub redirects LFS files to a CDN and names the content in these headers
            headers.update({"X-Linked-Etag": f'"{entry.sha256}"', "X-Linked-Size": entry.size})
        status, byte_range = 200, self.headers.get("Range", "")
        if byte_range.startswith("bytes=") and self.command == "GET":
            start_text, _, end_text = byte_range[len("bytes=") :].partition("-")
            start, end = int(start_text or 0), int(end_text) if end_text else len(data) - 1
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            status, data = 206, data[start : end + 1]
        self._send(status, data, headers)
