"""Tests for scratch_gpt.data.downloads and ``scratch-gpt data``: downloads from a loopback HTTP server on
127.0.0.1 (no test reaches the internet), copies from a folder, sha256 checks, atomic writes."""

from __future__ import annotations

import hashlib
import io
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from scratch_gpt.cli import main
from scratch_gpt.data import downloads
from scratch_gpt.data.downloads import DATA_FILES, DataFile, data_dir, data_path, fetch_data, file_status

STORY = b"I had always thought Jack Gisburn rather a cheap genius.\n" * 20
SPAM = b"ham\tOk lar...\nspam\tWIN a prize now\n"


def _zip(**members: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture
def server(monkeypatch):
    """A loopback HTTP server: ``files`` maps a path to its body (missing paths are 404); ``hits`` counts."""
    for var in ("no_proxy", "NO_PROXY"):  # never send a loopback request through a proxy
        monkeypatch.setenv(var, "127.0.0.1,localhost")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            server.hits.append(self.path)
            body = server.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server = httpd
    httpd.files, httpd.hits = {}, []
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _spec(name: str, data: bytes, *urls: str) -> DataFile:
    return DataFile(name, len(data), hashlib.sha256(data).hexdigest(), urls, "test file")


@pytest.fixture
def fake_files(monkeypatch, server):
    """Two data files whose sources are the loopback server: the story (a dead first source, then a good
    one) and the spam data (a member of a zip archive)."""
    files = {
        "story.txt": _spec(
            "story.txt", STORY, f"{server.url}/gone/story.txt", f"{server.url}/book/story.txt"
        ),
        "spam.tsv": _spec("spam.tsv", SPAM, f"{server.url}/uci/spam.zip#SMSSpamCollection"),
    }
    server.files.update(
        {"/book/story.txt": STORY, "/uci/spam.zip": _zip(**{"spam/SMSSpamCollection": SPAM, "readme": b"r"})}
    )
    monkeypatch.setattr(downloads, "DATA_FILES", files)
    return files


def test_data_dir_is_the_env_var_else_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("SCRATCH_GPT_DATA", str(tmp_path / "d"))
    assert data_dir() == tmp_path / "d"
    monkeypatch.delenv("SCRATCH_GPT_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert data_dir() == tmp_path / "cache" / "scratch_gpt" / "data"


def test_download_verifies_and_falls_back_to_the_next_source(fake_files, server, tmp_path):
    lines = []
    report = fetch_data(folder=tmp_path, log=lines.append)
    assert (tmp_path / "story.txt").read_bytes() == STORY and (tmp_path / "spam.tsv").read_bytes() == SPAM
    assert report.fetched == {"story.txt": f"{server.url}/book/story.txt", "spam.tsv": f"{server.url}/uci/spam.zip#SMSSpamCollection"}  # fmt: skip
    assert server.hits == ["/gone/story.txt", "/book/story.txt", "/uci/spam.zip"]
    assert len(lines) == 2 and "sha256 ok" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spam.tsv", "story.txt"]  # no temporary files left

    # a second run keeps the verified files and downloads nothing
    server.hits.clear()
    again = fetch_data(folder=tmp_path)
    assert again.present == ["story.txt", "spam.tsv"] and not again.fetched and server.hits == []


def test_wrong_bytes_are_never_written(fake_files, server, tmp_path):
    server.files["/book/story.txt"] = STORY.replace(b"cheap", b"CHEAP")  # same size, other bytes
    with pytest.raises(ConnectionError, match=r"could not get 1 of 2 .*story.txt.*sha256 .* does not match"):
        fetch_data(folder=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spam.tsv"]  # the good one is in place, no debris
    server.files["/book/story.txt"] = STORY[:-1]
    with pytest.raises(ConnectionError, match="expected"):
        fetch_data(["story.txt"], folder=tmp_path)
    assert not (tmp_path / "story.txt").exists()


def test_a_corrupt_file_is_replaced(fake_files, server, tmp_path):
    (tmp_path / "story.txt").write_bytes(b"truncated")
    assert file_status("story.txt", tmp_path) == "corrupt" and file_status("spam.tsv", tmp_path) == "missing"
    fetch_data(["story.txt"], folder=tmp_path)
    assert file_status("story.txt", tmp_path) == "ok" and (tmp_path / "story.txt").read_bytes() == STORY


def test_unreachable_server(monkeypatch, tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(
        downloads, "DATA_FILES", {"story.txt": _spec("story.txt", STORY, f"http://127.0.0.1:{port}/s")}
    )
    with pytest.raises(ConnectionError, match=r"story.txt .*--from DIR"):
        fetch_data(folder=tmp_path, timeout=5)


def test_copy_from_a_folder_and_a_partial_source(fake_files, server, tmp_path):
    source = tmp_path / "shared"
    source.mkdir()
    (source / "story.txt").write_bytes(STORY)
    with pytest.raises(ConnectionError, match=r"spam.tsv .*`scratch-gpt data` to download"):
        fetch_data(folder=tmp_path / "data", source_dir=source)
    assert (
        tmp_path / "data" / "story.txt"
    ).read_bytes() == STORY and server.hits == []  # copied, not fetched
    with pytest.raises(NotADirectoryError, match="no such folder"):
        fetch_data(folder=tmp_path / "data", source_dir=tmp_path / "nope")


def test_data_path_names_the_command(monkeypatch, tmp_path):
    monkeypatch.setenv("SCRATCH_GPT_DATA", str(tmp_path))
    with pytest.raises(
        FileNotFoundError, match=r"the-verdict.txt is not in the data folder .*`scratch-gpt data`"
    ):
        data_path("the-verdict.txt")
    with pytest.raises(ValueError, match="unknown data file"):
        data_path("verdict.txt")


def test_mirror_and_the_command_line(fake_files, server, monkeypatch, tmp_path, capsys):
    server.files.update({"/mirror/story.txt": STORY, "/mirror/spam.tsv": SPAM})
    monkeypatch.setenv("SCRATCH_GPT_DATA", str(tmp_path))
    assert main(["data", "--list"]) == 1
    assert "missing  story.txt" in capsys.readouterr().out
    assert main(["data", "--mirror", f"{server.url}/mirror"]) == 0
    out = capsys.readouterr().out
    assert f"data folder: {tmp_path}" in out and "all 2 files in place" in out
    assert set(server.hits) == {"/mirror/story.txt", "/mirror/spam.tsv"}
    assert main(["data", "--list"]) == 0 and main(["data", "--where"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == str(tmp_path)
    assert main(["data", "nonsense.txt"]) == 1
    assert "unknown data file" in capsys.readouterr().err


def test_the_pinned_files_are_the_shared_data(tmp_path):
    """The pinned sizes and sha256 values are those of the reference copies (when they are here)."""
    from conftest import DATA_DIR

    present = [name for name in DATA_FILES if (DATA_DIR / name).is_file()]
    if not present:
        pytest.skip(f"no reference data in {DATA_DIR}: `scratch-gpt data --from DIR` or `scratch-gpt data`")
    report = fetch_data(present, folder=tmp_path, source_dir=DATA_DIR)
    assert sorted(report.fetched) == sorted(present)
    assert all(file_status(name, tmp_path) == "ok" for name in present)
    for spec in DATA_FILES.values():
        assert all(url.startswith("https://") for url in spec.urls)  # public sources, fetched over TLS
    assert Path(report.folder) == tmp_path


@pytest.mark.parametrize(
    ("script", "argv", "names"),
    [
        ("finetune_classifier_trainer", ["--model", "m", "--output", "o"], ["SMSSpamCollection.tsv"]),
        ("finetune_instruct_trainer", ["--model", "m", "--output", "o"], ["instruction-data.json"]),
        ("pretrain_small_gpt", ["--output", "o"], ["tinyshakespeare.txt", "the-verdict.txt"]),
        ("pretrain_with_trainer", ["--output", "o"], ["tinyshakespeare.txt"]),
    ],
)
def test_examples_name_the_command_when_data_is_missing(script, argv, names, monkeypatch, tmp_path, capsys):
    """Without the data, the examples stop with one line naming the file and `scratch-gpt data` (no traceback);
    their defaults come from the one data folder, and their output option is --output."""
    import importlib.util

    from conftest import REPO_ROOT

    monkeypatch.setenv("SCRATCH_GPT_DATA", str(tmp_path / "empty"))
    spec = importlib.util.spec_from_file_location(
        f"example_{script}", REPO_ROOT / "examples" / f"{script}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit) as exit_info:
        module.parse_args(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert all(name in err for name in names) and "`scratch-gpt data`" in err and "Traceback" not in err
    assert str(tmp_path / "empty") in err
