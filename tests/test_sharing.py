"""Hub push/pull round trips against a loopback fake Hub (``tests/hubserver.py``).

What these tests prove: with the pinned clients (huggingface_hub 2.4, transformers 5.24), scratch_gpt's
models, tokenizers and ``scratch_gpt.hub.sharing.push`` produce the Hub HTTP calls we expect — repo creation
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
import json
import os
import re
import shutil
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
    """A repo id unique to this test: ``testuser/<test name>-<hash of its node id>``."""
    name = re.sub(r"[^A-Za-z0-9]+", "-", request.node.originalname).strip("-")[:70]
    return f"{USER}/{name}-{hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:8]}"


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


def test_server_plumbing_chunked_bodies_errors_and_keep_alive():
    """Chunked uploads are decoded, a malformed request gets a 500 naming the problem, and the same kept-alive
    connection still works afterwards (every body is drained, even on errors)."""
    import http.client

    hub = FakeHub().start()
    try:
        hub.create_repo(f"{USER}/plumbing")
        conn = http.client.HTTPConnection(hub.url.removeprefix("http://"), timeout=5)
        data = os.urandom(5000)
        oid = hashlib.sha256(data).hexdigest()
        conn.request("PUT", f"/_lfs/{oid}", body=iter([data[:1000], data[1000:]]), encode_chunked=True)
        response = conn.getresponse()
        response.read()
        assert response.status == 200 and hub.blobs[oid] == data
        commit_url = f"/api/models/{USER}/plumbing/commit/main"
        conn.request("POST", commit_url, body=b"{}\n")
        response = conn.getresponse()
        assert response.status == 401 and b"Invalid credentials" in response.read()  # writes need a token
        conn.request("POST", commit_url, body=b"not json\n", headers={"Authorization": "Bearer hf_x"})
        response = conn.getresponse()
        assert response.status == 500 and "JSONDecodeError" in json.loads(response.read())["error"]
        conn.request("PUT", "/_lfs/" + "0" * 64, body=b"wrong content")
        response = conn.getresponse()
        assert response.status == 400 and b"does not hash" in response.read()
        conn.request("GET", f"/api/models/{USER}/plumbing")
        response = conn.getresponse()
        assert response.status == 200 and json.loads(response.read())["id"] == f"{USER}/plumbing"
        conn.close()
    finally:
        hub.stop()


# --- scratch_gpt models and tokenizers on the Hub ----------------------------------------------------------
HISTORY = {"steps": [0, 10, 20], "tokens_seen": [64, 704, 1344], "train_losses": [5.0, 4.0, 3.5],
           "val_losses": [5.1, 4.3, 4.2], "dataset": "a pangram, repeated"}  # fmt: skip
TEXT = "The quick brown fox jumps over the lazy dog. Every effort moves you forward! "


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A saved tiny model + tokenizer + training history: (folder, model, tokenizer)."""
    import torch
    from model_helpers import tiny_config

    from scratch_gpt import BPETokenizer, ScratchGPTForCausalLM, ScratchGPTTokenizerFast

    bpe = BPETokenizer.train(TEXT * 5, vocab_size=300, show_progress=False)
    tokenizer = ScratchGPTTokenizerFast.from_bpe(bpe)
    torch.manual_seed(0)
    model = ScratchGPTForCausalLM(tiny_config(vocab_size=len(tokenizer), n_positions=64)).eval()
    folder = tmp_path_factory.mktemp("checkpoint")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "training_history.json").write_text(json.dumps(HISTORY))
    return folder, model, tokenizer


def _logits(model, tokenizer):
    import torch

    with torch.no_grad():
        return model(tokenizer([TEXT], return_tensors="pt").input_ids).logits


def _copy(folder, tmp_path):
    return Path(shutil.copytree(folder, tmp_path / "copy"))


def test_push_to_hub_then_from_pretrained_gives_the_same_model(hub, repo_id, checkpoint):
    import torch
    from huggingface_hub import HfApi
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from scratch_gpt import ScratchGPTForCausalLM, ScratchGPTTokenizerFast

    _, model, tokenizer = checkpoint
    model.push_to_hub(repo_id)
    tokenizer.push_to_hub(repo_id)
    tree = {f.path: f for f in HfApi().list_repo_tree(repo_id, recursive=True)}
    assert tree["model.safetensors"].lfs is not None  # LFS "basic" upload
    assert {"config.json", "tokenizer.json", "modeling_scratch_gpt.py", "tokenization_scratch_gpt.py"} <= set(
        tree
    )

    loaded = AutoModelForCausalLM.from_pretrained(repo_id).eval()  # fresh cache: really downloaded
    loaded_tokenizer = AutoTokenizer.from_pretrained(repo_id)
    assert type(loaded) is ScratchGPTForCausalLM and type(loaded_tokenizer) is ScratchGPTTokenizerFast
    assert loaded_tokenizer(TEXT).input_ids == tokenizer(TEXT).input_ids
    torch.testing.assert_close(_logits(loaded, loaded_tokenizer), _logits(model, tokenizer), rtol=0, atol=0)


def test_push_uploads_folder_with_generated_card(hub, repo_id, checkpoint):
    import torch
    from huggingface_hub import HfApi, ModelCard, hf_hub_download
    from transformers import AutoModelForCausalLM

    from scratch_gpt.hub.sharing import push

    folder, model, tokenizer = checkpoint
    local_files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    url = push(folder, repo_id, private=True, commit_message="tiny model")
    api = HfApi()
    info = api.model_info(repo_id)
    assert url == f"{hub.url}/{repo_id}/commit/{info.sha}"
    assert info.private is True
    assert sorted(api.list_repo_files(repo_id)) == sorted([*local_files, ".gitattributes", "README.md"])
    assert not (folder / "README.md").exists()  # the card is uploaded, the folder left as it was
    assert push(folder, repo_id) == url  # nothing changed (the card is deterministic): no new commit

    card = ModelCard.load(hf_hub_download(repo_id, "README.md"))
    assert card.data.library_name == "transformers" and "scratch_gpt" in card.data.tags
    assert "| Optimizer steps | 20 |" in card.text and f'from_pretrained("{repo_id}"' in card.text
    n_params = sum(p.numel() for p in model.parameters())  # tied head counted once, as stored
    assert f"| Parameters | {n_params:,} " in card.text

    loaded = AutoModelForCausalLM.from_pretrained(repo_id).eval()
    torch.testing.assert_close(_logits(loaded, tokenizer), _logits(model, tokenizer), rtol=0, atol=0)


def test_push_to_a_branch_and_pull_by_revision(hub, repo_id, checkpoint, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from scratch_gpt.hub.sharing import pull, push

    folder, model, tokenizer = checkpoint
    push(folder, repo_id)
    changed = _copy(folder, tmp_path)
    other = type(model).from_pretrained(changed)
    with torch.no_grad():
        for parameter in other.parameters():
            parameter.add_(0.01)  # a different model on the branch
    other.save_pretrained(changed)
    push(changed, repo_id, revision="experiment")

    main_dir, branch_dir = pull(repo_id), pull(repo_id, revision="experiment")
    assert (
        main_dir != branch_dir
        and (main_dir / "model.safetensors").read_bytes() != (branch_dir / "model.safetensors").read_bytes()
    )
    on_main = AutoModelForCausalLM.from_pretrained(repo_id).eval()
    on_branch = AutoModelForCausalLM.from_pretrained(repo_id, revision="experiment").eval()
    torch.testing.assert_close(_logits(on_main, tokenizer), _logits(model, tokenizer), rtol=0, atol=0)
    torch.testing.assert_close(
        _logits(on_branch, tokenizer), _logits(other.eval(), tokenizer), rtol=0, atol=0
    )
    local = pull(repo_id, local_dir=tmp_path / "local")
    assert local == tmp_path / "local" and (local / "config.json").is_file()


def test_offline_loads_from_cache_without_any_request(hub, repo_id, checkpoint, monkeypatch):
    """``HF_HUB_OFFLINE=1`` (the constant the client reads; the env var is only read at import) serves the cached
    snapshot and sends nothing to the server; an id that was never downloaded raises OSError."""
    import huggingface_hub.constants as hf_constants
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from scratch_gpt.hub.sharing import pull, push

    folder, model, tokenizer = checkpoint
    push(folder, repo_id)
    AutoModelForCausalLM.from_pretrained(repo_id)  # fills this test's fresh cache
    AutoTokenizer.from_pretrained(repo_id)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    served = len(hub.requests)

    loaded = AutoModelForCausalLM.from_pretrained(repo_id).eval()
    loaded_tokenizer = AutoTokenizer.from_pretrained(repo_id)
    assert (pull(repo_id) / "model.safetensors").is_file()
    assert hub.requests[served:] == []  # nothing reached the server
    torch.testing.assert_close(_logits(loaded, loaded_tokenizer), _logits(model, tokenizer), rtol=0, atol=0)
    with pytest.raises(OSError):
        AutoModelForCausalLM.from_pretrained(f"{USER}/never-downloaded")
    with pytest.raises(FileNotFoundError, match="not in the local Hub cache"):
        pull(f"{USER}/never-downloaded")


CHILD = """
import sys
sys.modules["scratch_gpt"] = None  # our package must not be importable: only the repo's own code may run
import json, torch
from transformers import AutoModelForCausalLM, AutoTokenizer

repo_id, text, out_file = sys.argv[1:4]
tokenizer = AutoTokenizer.from_pretrained(repo_id, trust_remote_code=True)
model = AutoModelForCausalLM.from_pretrained(repo_id, trust_remote_code=True).eval()
ids = tokenizer([text], return_tensors="pt").input_ids
with torch.no_grad():
    result = {"modules": [type(model).__module__, type(tokenizer).__module__], "ids": ids.tolist(),
              "logits": model(ids).logits.tolist()}
try:
    AutoModelForCausalLM.from_pretrained(repo_id + "-never-pushed", trust_remote_code=True)
    result["missing"] = "loaded?!"
except OSError as err:
    result["missing"] = type(err).__name__
json.dump(result, open(out_file, "w"))
"""


def _run_child(tmp_path, repo_id, env_updates):
    import subprocess
    import sys

    (tmp_path / "child.py").write_text(CHILD)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "HF_", "TRANSFORMERS_"))}
    env.update(HF_HOME=str(tmp_path / "child_hf_home"), HF_HUB_DISABLE_XET="1", HF_TOKEN="hf_dummy_token",
               HF_HUB_DISABLE_TELEMETRY="1", **env_updates)  # fmt: skip
    out = tmp_path / "out.json"
    out.unlink(missing_ok=True)
    proc = subprocess.run(
        [sys.executable, "-I", "child.py", repo_id, TEXT, str(out)],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,  # never wait on the "trust this code? [y/N]" prompt
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.slow
def test_remote_code_from_the_hub_without_our_package_then_offline(hub, repo_id, checkpoint, tmp_path):
    """A fresh ``python -I`` process where ``import scratch_gpt`` fails downloads the repo from the fake Hub and
    runs the repo's own code (``trust_remote_code=True``): same token ids and logits. A second such process with
    ``HF_HUB_OFFLINE=1`` and the endpoint pointing at a closed port loads the same model from its cache."""
    import socket

    import torch

    from scratch_gpt.hub.sharing import push

    folder, model, tokenizer = checkpoint
    push(folder, repo_id)
    served = len(hub.requests)
    online = _run_child(tmp_path, repo_id, {"HF_ENDPOINT": hub.url})
    assert len(hub.requests) > served  # it really came over HTTP
    assert all(m.startswith("transformers_modules.") for m in online["modules"]), online["modules"]
    expected_ids = tokenizer([TEXT], return_tensors="pt").input_ids
    assert online["ids"] == expected_ids.tolist()
    torch.testing.assert_close(torch.tensor(online["logits"]), _logits(model, tokenizer), rtol=0, atol=1e-6)
    assert online["missing"] == "OSError"

    with socket.socket() as closed:  # a port nothing listens on: any request would fail
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}"
    served = len(hub.requests)
    offline = _run_child(tmp_path, repo_id, {"HF_ENDPOINT": dead, "HF_HUB_OFFLINE": "1"})
    assert len(hub.requests) == served
    assert offline["ids"] == online["ids"] and offline["logits"] == online["logits"]
    assert all(m.startswith("transformers_modules.") for m in offline["modules"])
    assert offline["missing"] == "OSError"


# --- bad input: each gets a clear exception ----------------------------------------------------------------
@pytest.mark.parametrize(
    "bad_id", ["no-namespace", "a/b/c", "ns/with space", "ns/a--b", "ns/a..b", "", None, "/x"]
)
def test_push_and_pull_reject_bad_repo_ids(checkpoint, bad_id):
    from scratch_gpt.hub.sharing import pull, push

    with pytest.raises(ValueError, match="NAMESPACE/NAME"):
        push(checkpoint[0], bad_id)
    with pytest.raises(ValueError, match="NAMESPACE/NAME"):
        pull(bad_id)


def _break_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps({k: v for k, v in config.items() if v is not None}))


@pytest.mark.parametrize(
    "breakage, error, match",
    [
        (lambda f: shutil.rmtree(f), FileNotFoundError, "does not exist"),
        (lambda f: (shutil.rmtree(f), f.write_text("x")), NotADirectoryError, "is a file"),
        (lambda f: (f / "config.json").unlink(), FileNotFoundError, "save_pretrained"),
        (lambda f: (f / "config.json").write_text("{"), ValueError, "not valid JSON"),
        (lambda f: _break_config(f, model_type="gpt2"), ValueError, "not 'scratch_gpt'"),
        (lambda f: _break_config(f, auto_map=None), ValueError, "no auto_map"),
        (
            lambda f: (f / "modeling_scratch_gpt.py").unlink(),
            ValueError,
            "modeling_scratch_gpt.py is missing",
        ),
        (lambda f: (f / "layers.py").unlink(), ValueError, r"layers.py is missing .*needed by model.py"),
        (lambda f: (f / "bpe.py").unlink(), ValueError, "bpe.py is missing"),
        (
            lambda f: (f / "tokenizer_config.json").write_text("{"),
            ValueError,
            "tokenizer_config.json is not valid",
        ),
    ],
    ids=[
        "missing",
        "file",
        "no-config",
        "bad-config",
        "not-ours",
        "no-auto-map",
        "no-modeling",
        "no-sibling",
        "no-tokenizer-code",
        "bad-tokenizer-config",
    ],  # fmt: skip
)
def test_push_rejects_folders_that_would_not_load(hub, repo_id, checkpoint, tmp_path, breakage, error, match):
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    from scratch_gpt.hub.sharing import push

    folder = _copy(checkpoint[0], tmp_path)
    breakage(folder)
    with pytest.raises(error, match=match):
        push(folder, repo_id)
    with pytest.raises(RepositoryNotFoundError):
        HfApi().model_info(repo_id)  # checked before anything was created


def test_push_without_a_token_is_a_permission_error(hub, repo_id, checkpoint, monkeypatch):
    from scratch_gpt.hub.sharing import push

    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(PermissionError, match="hf auth login"):
        push(checkpoint[0], repo_id)


def test_unreachable_hub_is_a_connection_error(hub, repo_id, checkpoint, monkeypatch):
    import socket

    import huggingface_hub.constants as hf_constants

    from scratch_gpt.hub.sharing import pull, push

    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}"
    monkeypatch.setattr(hf_constants, "ENDPOINT", dead)
    with pytest.raises(ConnectionError, match="could not reach the Hub at http://127.0.0.1"):
        push(checkpoint[0], repo_id)
    with pytest.raises(FileNotFoundError, match="not in the local Hub cache and the Hub cannot be reached"):
        pull(repo_id)  # snapshot_download falls back to the (empty) cache


def test_pull_unknown_repo_or_revision_is_file_not_found(hub, repo_id, checkpoint):
    from scratch_gpt.hub.sharing import pull, push

    with pytest.raises(FileNotFoundError, match="not found on the Hub"):
        pull(f"{USER}/no-such-repo")
    push(checkpoint[0], repo_id)
    with pytest.raises(FileNotFoundError, match="revision 'nope' not found"):
        pull(repo_id, revision="nope")


def test_push_ignore_patterns_and_hidden_files(hub, repo_id, checkpoint, tmp_path):
    from huggingface_hub import HfApi

    from scratch_gpt.hub.sharing import push

    folder = _copy(checkpoint[0], tmp_path)
    (folder / "optimizer.pt").write_bytes(b"state")
    (folder / ".cache").mkdir()
    (folder / ".cache" / "x").write_text("x")
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"pyc")
    (folder / "README.md").write_text("# my own card\n")
    push(folder, repo_id, ignore_patterns=["optimizer.pt"])
    files = set(HfApi().list_repo_files(repo_id))
    assert "config.json" in files and "README.md" in files
    assert not {f for f in files if f.startswith((".cache", "__pycache__")) or f == "optimizer.pt"}
    from huggingface_hub import hf_hub_download

    assert Path(hf_hub_download(repo_id, "README.md")).read_text() == "# my own card\n"  # not replaced


# --- the CLI --------------------------------------------------------------------------------------------
def test_cli_push_pull_and_model_card(hub, repo_id, checkpoint, tmp_path, capsys):
    from huggingface_hub import HfApi

    from scratch_gpt.cli import main

    folder = _copy(checkpoint[0], tmp_path)
    assert main(["model-card", str(folder), "--repo-id", repo_id, "--license", "mit", "--tag", "tiny"]) == 0
    assert "wrote" in capsys.readouterr().out and "license: mit" in (folder / "README.md").read_text()
    assert main(["model-card", str(folder)]) == 1  # exists: refuses without --overwrite
    assert "--overwrite" in capsys.readouterr().err

    assert (
        main(["push", str(folder), repo_id, "--private", "--revision", "dev", "--message", "from the CLI"])
        == 0
    )
    out = capsys.readouterr().out
    assert out.startswith(f"pushed {folder} to {repo_id}: {hub.url}/{repo_id}/commit/")
    assert HfApi().model_info(repo_id).private is True
    assert "README.md" in HfApi().list_repo_files(repo_id, revision="dev")

    assert main(["pull", repo_id, "--revision", "dev", "--local-dir", str(tmp_path / "pulled")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "pulled")
    assert (tmp_path / "pulled" / "README.md").read_text() == (folder / "README.md").read_text()


def test_cli_errors_are_one_line_without_traceback(hub, tmp_path, capsys):
    from scratch_gpt.cli import main

    assert main(["push", str(tmp_path / "missing"), f"{USER}/x"]) == 1
    err = capsys.readouterr().err
    assert "scratch-gpt push: error:" in err and "does not exist" in err and "Traceback" not in err
    assert main(["pull", f"{USER}/no-such-repo"]) == 1
    assert "not found on the Hub" in capsys.readouterr().err
