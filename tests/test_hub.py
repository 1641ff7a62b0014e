"""Hub push/pull round trips against a loopback fake Hub (``tests/hubserver.py``).

What these tests prove: with the pinned clients (huggingface_hub 2.4, transformers 5.24), scratch_gpt's
models, tokenizers and ``scratch_gpt.hub.push`` produce the Hub HTTP calls we expect — repo creation
(incl. ``exist_ok``), regular and Git LFS uploads, listing, branch uploads, downloads into a fresh cache, the
not-found errors — and that what comes back loads into the same model (equal logits), with and without our
package installed (``trust_remote_code`` in a subprocess that cannot import scratch_gpt), and offline from
the cache (``HF_HUB_OFFLINE=1``).

What they cannot prove: compatibility with the real Hub (its server is not reachable here; the fake answers
only the routes these client versions were seen to call, the way the notes in
``../shared/notes/hub-testing.md`` describe), and nothing about the Xet upload path: ``hf_xet`` is installed, so
the client would send every LFS file to Xet, which the fake cannot serve; the fixture sets
``HF_HUB_DISABLE_XET=1`` and uploads go through LFS "basic" instead. Treat these as contract tests against
the pinned client versions; after upgrading either client, a failure here may be the fake's fault.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest
from hubserver import FakeHub

LFS_THRESHOLD = 10_000  # bytes: files this large go through LFS (so model.safetensors does)
USER = "testuser"
# huggingface_hub's own LFS PUT passes a file object as data=, which httpx2 deprecates; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning")


# --- fixtures -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fake_hub(tmp_path_factory):
    """A fake Hub on 127.0.0.1, and every Hub client setting pointed at it for this module's tests.

    Environment: ``HF_ENDPOINT``, ``HF_HUB_DISABLE_XET=1``, a dummy ``HF_TOKEN``, a temporary ``HF_HOME``,
    ``HF_HUB_DISABLE_TELEMETRY=1`` (inherited by subprocesses). ``huggingface_hub`` reads these once at
    import, so the matching ``huggingface_hub.constants`` (and the endpoint of its module-level ``HfApi``
    and of transformers' shared one) are patched too. Module-scoped, not session-scoped, so that all of it
    is restored, and the server's threads joined, as soon as this module's tests are done.
    """
    import huggingface_hub.constants as hf_constants
    import huggingface_hub.hf_api as hf_api_module
    import transformers.dynamic_module_utils as transformers_dynamic
    import transformers.utils.hub as transformers_hub

    hub = FakeHub(lfs_threshold=LFS_THRESHOLD, user=USER).start()
    home = tmp_path_factory.mktemp("hf_home")
    env = {
        "HF_ENDPOINT": hub.url,
        "HF_HUB_DISABLE_XET": "1",
        "HF_TOKEN": "hf_dummy_token",
        "HF_HOME": str(home),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_UPDATE_CHECK": "1",
    }
    constants = {
        "ENDPOINT": hub.url,
        "HUGGINGFACE_CO_URL_TEMPLATE": hub.url + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(home / "hub"),
        "HF_ASSETS_CACHE": str(home / "assets"),
        "HF_XET_CACHE": str(home / "xet"),
        "HF_TOKEN_PATH": str(home / "token"),
        "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
        "CHECK_FOR_UPDATE_DONE_PATH": str(home / ".check_for_update_done"),
        "AGENT_HARNESSES_PATH": str(home / ".agent_harnesses.json"),
        "HF_HUB_DISABLE_XET": True,
        "HF_HUB_DISABLE_TELEMETRY": True,
        "HF_HUB_DISABLE_UPDATE_CHECK": True,
        "HF_HUB_OFFLINE": False,
    }
    try:
        with pytest.MonkeyPatch.context() as mp:
            for name, value in env.items():
                mp.setenv(name, value)
            for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE",
                         "HF_MODULES_CACHE", "HF_TOKEN_PATH", "HUGGING_FACE_HUB_TOKEN", "HF_XET_CACHE"):  # fmt: skip
                mp.delenv(name, raising=False)
            for name, value in constants.items():
                mp.setattr(hf_constants, name, value)  # raising: a renamed constant must fail loudly here
            mp.setattr(hf_api_module.api, "endpoint", hub.url)
            mp.setattr(transformers_hub, "_hf_api", None)  # rebuilt on first use, with our endpoint
            mp.setattr(transformers_hub, "HF_MODULES_CACHE", str(home / "modules"))
            mp.setattr(transformers_dynamic, "HF_MODULES_CACHE", str(home / "modules"))
            yield hub
    finally:
        hub.stop()


@pytest.fixture
def hub(fake_hub, tmp_path, monkeypatch):
    """The fake Hub, with a fresh, empty download cache for this test (so every download really downloads)."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    return fake_hub


@pytest.fixture
def repo_id(request) -> str:
    """A repo id unique to this test: ``testuser/<test name>``."""
    return f"{USER}/" + re.sub(r"[^A-Za-z0-9]+", "-", request.node.name).strip("-")[:80]


def _make_folder(root, files: dict[str, bytes]):
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


# --- the server itself, through huggingface_hub ---------------------------------------------------------
def test_create_repo_exist_ok_and_conflict(hub, repo_id):
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi()
    url = api.create_repo(repo_id)
    assert url == f"{hub.url}/{repo_id}" and url.repo_id == repo_id
    assert api.create_repo(repo_id, exist_ok=True) == url  # the 409 answer carries the url too
    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo(repo_id)
    assert err.value.response.status_code == 409
    info = api.model_info(repo_id)
    assert info.private is False
    assert [s.rfilename for s in info.siblings] == [".gitattributes"]  # the Hub's first commit
    assert api.model_info(api.create_repo(repo_id + "-private", private=True).repo_id).private is True


def test_upload_folder_uses_lfs_for_large_files_and_lists_them(hub, repo_id, tmp_path):
    from huggingface_hub import HfApi

    big = os.urandom(300_000)
    folder = _make_folder(
        tmp_path / "up", {"notes.txt": b"hello hub\n", "sub/blob.dat": big, "empty.txt": b""}
    )
    api = HfApi()
    api.create_repo(repo_id)
    commit = api.upload_folder(folder_path=folder, repo_id=repo_id, commit_message="first upload")
    assert commit.oid == api.model_info(repo_id).sha

    assert sorted(api.list_repo_files(repo_id)) == [
        ".gitattributes",
        "empty.txt",
        "notes.txt",
        "sub/blob.dat",
    ]
    tree = {f.path: f for f in api.list_repo_tree(repo_id, recursive=True)}
    assert tree["sub/blob.dat"].lfs is not None  # went through the LFS batch API + PUT
    assert tree["sub/blob.dat"].lfs.sha256 == hashlib.sha256(big).hexdigest()
    assert tree["sub/blob.dat"].size == len(big)
    assert tree["notes.txt"].lfs is None and tree["empty.txt"].lfs is None  # sent inline in the commit
    assert hashlib.sha256(big).hexdigest() in hub.blobs
    # the LFS upload happened: a PUT to the href handed out by the batch call
    assert any(m == "PUT" and p.startswith("/_lfs/") and s == 200 for m, p, s in hub.requests)
    top = {f.path for f in api.list_repo_tree(repo_id)}  # non-recursive: the folder, not its content
    assert top == {".gitattributes", "empty.txt", "notes.txt", "sub"}


def test_unchanged_reupload_is_not_a_new_commit(hub, repo_id, tmp_path):
    from huggingface_hub import HfApi

    folder = _make_folder(tmp_path / "up", {"a.txt": b"same", "w.safetensors": b"\0" * 100})
    api = HfApi()
    api.create_repo(repo_id)
    first = api.upload_folder(folder_path=folder, repo_id=repo_id).oid
    api.upload_folder(folder_path=folder, repo_id=repo_id)  # preupload reports equal oids: nothing to commit
    assert api.model_info(repo_id).sha == first


def test_snapshot_download_into_fresh_cache_gives_same_bytes(hub, repo_id, tmp_path):
    from huggingface_hub import HfApi, snapshot_download

    files = {"config.json": b'{"a": 1}', "nested/deeper/blob.bin": os.urandom(50_000), "README.md": b"# hi\n"}
    folder = _make_folder(tmp_path / "up", files)
    api = HfApi()
    api.create_repo(repo_id)
    sha = api.upload_folder(folder_path=folder, repo_id=repo_id).oid

    local = snapshot_download(repo_id)
    assert local.startswith(str(tmp_path / "hub-cache"))  # the per-test cache, not a shared one
    assert os.path.basename(local) == sha  # snapshots are keyed by commit
    for rel, data in files.items():
        assert Path(local, rel).read_bytes() == data
    other = snapshot_download(repo_id, cache_dir=tmp_path / "second-cache", allow_patterns=["*.json"])
    assert sorted(os.listdir(other)) == ["config.json"]


def test_branch_upload_and_download_by_revision(hub, repo_id):
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    api = HfApi()
    api.create_repo(repo_id)
    api.upload_file(path_or_fileobj=b"on main", path_in_repo="which.txt", repo_id=repo_id)
    main_sha = api.model_info(repo_id).sha
    api.create_branch(repo_id, branch="feature/dev")  # a "/" travels percent-encoded
    api.upload_file(
        path_or_fileobj=b"on dev", path_in_repo="which.txt", repo_id=repo_id, revision="feature/dev"
    )
    api.upload_file(
        path_or_fileobj=b"x", path_in_repo="dev-only.txt", repo_id=repo_id, revision="feature/dev"
    )

    assert Path(hf_hub_download(repo_id, "which.txt", revision="feature/dev")).read_text() == "on dev"
    assert Path(hf_hub_download(repo_id, "which.txt")).read_text() == "on main"
    assert (
        Path(hf_hub_download(repo_id, "which.txt", revision=main_sha)).read_text() == "on main"
    )  # by commit id
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(repo_id, "dev-only.txt")  # absent on main
    refs = {ref.name: ref.target_commit for ref in api.list_repo_refs(repo_id).branches}
    assert (
        refs["main"] == main_sha
        and refs["feature/dev"] == api.model_info(repo_id, revision="feature/dev").sha
    )
    assert api.create_branch(repo_id, branch="feature/dev", exist_ok=True) is None  # 409 swallowed


@pytest.mark.parametrize(
    "what, call",
    [
        ("repo", lambda rid: __import__("huggingface_hub").hf_hub_download(f"{USER}/no-such-repo", "x.txt")),
        ("repo", lambda rid: __import__("huggingface_hub").HfApi().model_info(f"{USER}/no-such-repo")),
        (
            "revision",
            lambda rid: __import__("huggingface_hub").hf_hub_download(rid, "a.txt", revision="nope"),
        ),
        ("revision", lambda rid: __import__("huggingface_hub").HfApi().list_repo_files(rid, revision="nope")),
        ("entry", lambda rid: __import__("huggingface_hub").hf_hub_download(rid, "missing.txt")),
    ],
)
def test_not_found_errors_map_to_their_exception_classes(hub, repo_id, what, call):
    from huggingface_hub import HfApi
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    api = HfApi()
    api.create_repo(repo_id)
    api.upload_file(path_or_fileobj=b"a", path_in_repo="a.txt", repo_id=repo_id)
    expected = {
        "repo": RepositoryNotFoundError,
        "revision": RevisionNotFoundError,
        "entry": EntryNotFoundError,
    }
    with pytest.raises(expected[what]):
        call(repo_id)


def test_commit_on_stale_parent_is_refused(hub, repo_id):
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi()
    api.create_repo(repo_id)
    old = api.model_info(repo_id).sha
    api.upload_file(path_or_fileobj=b"1", path_in_repo="a.txt", repo_id=repo_id)
    with pytest.raises(HfHubHTTPError) as err:
        api.create_commit(repo_id, [CommitOperationAdd("b.txt", b"2")], commit_message="m", parent_commit=old)
    assert err.value.response.status_code == 412


def test_server_stops_and_joins_its_threads():
    """stop() must not leave threads behind, even with a client connection still open (HTTP keep-alive)."""
    import http.client
    import threading

    before = set(threading.enumerate())
    hub = FakeHub().start()
    conn = http.client.HTTPConnection(hub.url.removeprefix("http://"), timeout=5)
    conn.request("GET", f"/api/models/{USER}/none")
    response = conn.getresponse()
    assert response.status == 404 and response.getheader("X-Error-Code") == "RepoNotFound"
    response.read()  # the connection stays open, its handler thread waits for the next request
    assert len(set(threading.enumerate()) - before) >= 2
    hub.stop()
    assert set(threading.enumerate()) - before == set()
    conn.close()
