"""Atomic artifact writes: the old file or the new one, never half, never a
stray temp file."""

import os

import pytest

from keras_tflq.conversion.artifact import check_writable_folder
from keras_tflq.conversion.artifact import write_atomic


def test_write_replaces_the_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "model.tflite"
    write_atomic(str(path), b"old")
    write_atomic(str(path), b"new bytes")
    assert path.read_bytes() == b"new bytes"
    assert os.listdir(tmp_path) == ["model.tflite"]


def test_failed_write_keeps_the_earlier_file(tmp_path, monkeypatch):
    path = tmp_path / "model.tflite"
    write_atomic(str(path), b"good")

    def failing_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="No space left"):
        write_atomic(str(path), b"half written")
    assert path.read_bytes() == b"good"
    assert os.listdir(tmp_path) == ["model.tflite"]


def test_text_is_written_as_utf8(tmp_path):
    path = tmp_path / "report.json"
    write_atomic(str(path), '{"name": "модель"}')
    assert path.read_text(encoding="utf-8") == '{"name": "модель"}'


def test_missing_folder_is_created(tmp_path):
    check_writable_folder(str(tmp_path / "a" / "b" / "m.tflite"))
    assert (tmp_path / "a" / "b").is_dir()
    assert os.listdir(tmp_path / "a" / "b") == []


def test_folder_that_is_a_file_is_rejected(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(
        ValueError,
        match=(
            r"writable folder for the artifact. Received: "
            r"filepath='.*file/m.tflite'"
        ),
    ):
        check_writable_folder(str(tmp_path / "file" / "m.tflite"))
