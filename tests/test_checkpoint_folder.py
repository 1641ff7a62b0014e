"""Tests for scratch_gpt.hub.checkpoint_folder: each way a checkpoint folder can be wrong has its one error."""

from __future__ import annotations

import pytest

from scratch_gpt.hub.checkpoint_folder import check_model_folder, read_config_json


def test_each_problem_has_its_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_model_folder(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is not a directory"):
        check_model_folder(tmp_path / "file")
    folder = tmp_path / "ckpt"
    folder.mkdir()
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        check_model_folder(folder)
    (folder / "config.json").write_text("{oops")
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        read_config_json(folder)
    (folder / "config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="is not a JSON object"):
        read_config_json(folder)
    (folder / "config.json").write_text('{"model_type": "gpt2"}')
    assert read_config_json(folder) == {"model_type": "gpt2"}
    assert check_model_folder(str(folder)) == folder
    with pytest.raises(FileNotFoundError, match=r"has no tokenizer .*tokenizer.save_pretrained"):
        check_model_folder(folder, tokenizer=True)
    (folder / "tokenizer.json").write_text("{}")
    assert check_model_folder(folder, tokenizer=True) == folder
