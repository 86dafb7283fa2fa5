"""store_hf.files: atomic writes and the safetensors + JSON pair with a fingerprint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from store_hf.files import (
    atomic_write,
    load_tensors_and_config,
    save_tensors_and_config,
    write_json_atomic,
)


def test_atomic_write_bytes_text_and_writer(tmp_path):
    atomic_write(tmp_path / "sub" / "a.bin", b"\x00\x01")
    atomic_write(tmp_path / "b.txt", "héllo")
    atomic_write(tmp_path / "c.txt", lambda tmp: Path(tmp).write_text("from a writer"))
    assert (tmp_path / "sub" / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "b.txt").read_text(encoding="utf-8") == "héllo"
    assert (tmp_path / "c.txt").read_text() == "from a writer"
    assert (tmp_path / "b.txt").stat().st_mode & 0o777 == 0o644
    write_json_atomic(tmp_path / "d.json", {"x": np.int64(3), "y": np.arange(2)})
    assert json.loads((tmp_path / "d.json").read_text()) == {"x": 3, "y": [0, 1]}


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "f.txt"
    atomic_write(path, "old")

    def broken(tmp: str) -> None:
        Path(tmp).write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, broken)
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


@pytest.mark.parametrize("framework", ["np", "pt"])
def test_tensors_and_config_round_trip(tmp_path, framework):
    values = np.arange(6, dtype=np.float32).reshape(2, 3)
    tensors = {"w": values if framework == "np" else torch.from_numpy(values)}
    fingerprint = save_tensors_and_config(tmp_path, "m.safetensors", "m.json", tensors, {"a": 1}, 2)
    loaded, meta = load_tensors_and_config(tmp_path, "m.safetensors", "m.json", 2, framework)
    assert meta == {"format_version": 2, "fingerprint": fingerprint, "a": 1}
    np.testing.assert_array_equal(np.asarray(loaded["w"]), values)


def test_mixed_pairs_newer_formats_and_missing_files_are_refused(tmp_path):
    tensors = {"w": np.zeros(2, dtype=np.float32)}
    save_tensors_and_config(tmp_path / "a", "m.safetensors", "m.json", tensors, {}, 1)
    # the fingerprint is a content hash: a pair of two saves of other content is refused
    save_tensors_and_config(tmp_path / "b", "m.safetensors", "m.json", tensors, {"x": 1}, 1)
    (tmp_path / "b" / "m.json").replace(tmp_path / "a" / "m.json")
    with pytest.raises(ValueError, match="different saves"):
        load_tensors_and_config(tmp_path / "a", "m.safetensors", "m.json", 1, "np")
    save_tensors_and_config(tmp_path / "c", "m.safetensors", "m.json", tensors, {}, 3)
    with pytest.raises(ValueError, match="upgrade store_hf"):
        load_tensors_and_config(tmp_path / "c", "m.safetensors", "m.json", 2, "np")
    with pytest.raises(FileNotFoundError, match=r"widget file missing: .*m\.json"):
        load_tensors_and_config(tmp_path / "b", "m.safetensors", "m.json", 1, what="widget")
