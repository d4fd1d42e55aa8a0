"""steerlab.base.files: the one atomic-file helper. A write that fails half-way leaves neither a file under the
final name nor a temporary one beside it, and an older file is left exactly as it was."""

from __future__ import annotations

import json
import os

import pytest

from steerlab.base.files import atomic_open, atomic_path, atomic_write, atomic_write_json


def _names(d):
    return sorted(p.name for p in d.iterdir())


def test_writes_bytes_text_and_json(tmp_path):
    assert atomic_write(tmp_path / "a.bin", b"\x00\xff") == tmp_path / "a.bin"
    atomic_write(tmp_path / "sub" / "b.txt", "héllo\n")  # the folder is made
    atomic_write_json(tmp_path / "c.json", {"x": [1, 2]})
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\xff"
    assert (tmp_path / "sub" / "b.txt").read_text(encoding="utf-8") == "héllo\n"
    assert (tmp_path / "c.json").read_text() == json.dumps({"x": [1, 2]}, indent=2)
    assert _names(tmp_path) == ["a.bin", "c.json", "sub"]  # no temporary name left


@pytest.mark.parametrize("exc", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_a_failure_mid_write_leaves_no_file_and_no_temp(tmp_path, exc):
    with pytest.raises(type(exc)), atomic_open(tmp_path / "out.csv") as f:
        f.write("a,b\n1,")
        f.flush()
        raise exc
    assert _names(tmp_path) == []


def test_a_failed_rewrite_keeps_the_old_file(tmp_path):
    path = atomic_write(tmp_path / "result.json", '{"done": true}')

    class Unjsonable:
        pass

    with pytest.raises(TypeError):
        atomic_write_json(path, {"half": [1, 2, Unjsonable()]})  # fails after part of the text is written
    assert path.read_text() == '{"done": true}' and _names(tmp_path) == ["result.json"]


def test_a_path_writer_sees_a_hidden_temp_with_the_same_suffix(tmp_path):
    final = tmp_path / "plot.png"
    with atomic_path(final) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".plot.tmp-") and tmp.suffix == ".png"
        assert tmp.exists() and not final.exists()  # only the finished file carries the name
        tmp.write_bytes(b"png")
    assert final.read_bytes() == b"png" and _names(tmp_path) == ["plot.png"]
    with pytest.raises(ValueError), atomic_path(final) as tmp:
        tmp.write_bytes(b"half")
        raise ValueError("writer failed")
    assert final.read_bytes() == b"png" and _names(tmp_path) == ["plot.png"]


def test_permissions_follow_the_umask_like_open(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "f.txt", "x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600


def test_only_new_files_are_written():
    with pytest.raises(ValueError, match="mode must be 'w' or 'wb'"), atomic_open("x", "a"):
        pass
