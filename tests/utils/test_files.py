"""Atomic writes: a target is complete or untouched, with ordinary permissions."""

import os
import socket
import subprocess
import sys

import pytest

from keras_ptame.utils.files import atomic_path, replace_directory, write_text


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_written_file_gets_the_permissions_open_gives(tmp_path):
    target = tmp_path / "out" / "table.md"
    write_text(target, "| a |")
    assert target.read_text() == "| a |\n"
    assert os.stat(target).st_mode & 0o777 == 0o666 & ~_umask()
    # Nothing but the target is left beside it.
    assert os.listdir(tmp_path / "out") == ["table.md"]


def test_a_failed_write_leaves_the_target_as_it_was(tmp_path):
    target = tmp_path / "explainer.keras"
    target.write_text("previous")
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_path(target) as temporary:
            assert temporary.endswith(".keras") and not os.path.exists(temporary)
            with open(temporary, "w") as file:
                file.write("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "previous"
    assert os.listdir(tmp_path) == ["explainer.keras"]


def test_a_block_that_writes_nothing_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="Nothing was written"):
        with atomic_path(tmp_path / "empty.txt"):
            pass
    assert os.listdir(tmp_path) == []


def test_a_folder_replaces_the_previous_one_whole(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_path(target, directory=True) as temporary:
        os.makedirs(temporary)
        with open(os.path.join(temporary, "new.txt"), "w") as file:
            file.write("new")
    assert os.listdir(target) == ["new.txt"]
    assert os.listdir(tmp_path) == ["model"]


def test_replace_directory_puts_the_old_folder_back_on_failure(tmp_path, monkeypatch):
    target, source = tmp_path / "model", tmp_path / "staged"
    target.mkdir()
    (target / "old.txt").write_text("old")
    real_rename = os.rename

    def failing_rename(src, dst):
        if os.fspath(src) == os.fspath(source):
            raise OSError("disk full")
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", failing_rename)
    with pytest.raises(OSError, match="disk full"):
        replace_directory(os.fspath(source), os.fspath(target))
    assert (target / "old.txt").read_text() == "old"


# Issue 22, case 12
def test_the_next_write_removes_a_killed_write_s_staging_folder(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    stale = tmp_path / f".table.md.tmp-{dead.pid}-{host}-abc123"
    live = tmp_path / f".table.md.tmp-{os.getpid()}-{host}-def456"
    for folder in (stale, live):
        folder.mkdir()
        (folder / "new.md").write_text("half")
    write_text(tmp_path / "table.md", "| a |")
    assert sorted(os.listdir(tmp_path)) == sorted([live.name, "table.md"])
