"""Writing artifacts atomically: a reader sees the old file or the new one,
never half."""

import json
import os
import tempfile

from keras_tflq.conversion.report import report_path


def write_atomic(path, data):
    """Writes `data` (bytes or str) to `path` atomically.

    The bytes go to a temporary file in the same folder, are flushed and
    synced, then renamed over `path` (`os.replace` is atomic on POSIX and
    Windows). If anything fails, the temporary file is removed and any
    earlier file at `path` is left untouched.

    Args:
        path: Destination file path.
        data: `bytes`, or `str` (written as UTF-8).

    Example:

    ```python
    from keras_tflq.conversion.artifact import write_atomic

    write_atomic("notes.txt", "first")
    write_atomic("notes.txt", "second")  # readers see one or the other
    ```
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    folder = os.path.dirname(os.path.abspath(path))
    fd, temp_path = tempfile.mkstemp(
        prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder
    )
    try:
        # mkstemp creates the file 0600; give it what open(path, "w") would.
        os.chmod(temp_path, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_path, path)
    except BaseException:
        if os.path.exists(temp_path):
            os.remove(temp_path)
        raise


def _umask():
    """The process umask (read by setting it, then restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_artifact(path, content, report):
    """Writes the artifact, then its JSON report beside it, each atomically."""
    write_atomic(path, content)
    write_atomic(report_path(path), json.dumps(report, indent=2))


def check_writable_folder(path):
    """Raises a `ValueError` unless the folder of `path` exists (or can be made)
    and is writable."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".keras_tflq_probe.", dir=folder)
        os.close(fd)
        os.remove(probe)
    except OSError as error:
        raise ValueError(
            "Expected a writable folder for the artifact. Received: "
            f"filepath={path!r} "
            f"({error.strerror or error})"
        ) from None
