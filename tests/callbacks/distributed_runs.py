"""Running `distributed_worker.py` in subprocesses, bounded in time."""

import json
import os
import socket
import subprocess
import sys

WORKER = os.path.join(os.path.dirname(__file__), "distributed_worker.py")
TIMEOUT = 300


def _env(**extra):
    root = os.path.dirname(os.path.dirname(os.path.dirname(WORKER)))
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    return {
        **os.environ,
        "PYTHONPATH": path,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        **extra,
    }


def run_modes(folder, modes):
    """Trains in one process in each of `modes` in turn; returns the
    result dicts by mode and the output folder."""
    out, result = folder / "out", folder / "result.json"
    out.mkdir(parents=True)
    completed = subprocess.run(
        [sys.executable, WORKER, str(out), ",".join(modes), str(result)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(result.read_text()), out


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def run_multi_worker(folder, workers=2, **env):
    """Trains on `workers` processes of a MultiWorkerMirroredStrategy on
    127.0.0.1, each bounded by `TIMEOUT` seconds and always terminated.

    Returns `[(returncode, result dict, output folder, log)]` by task index.
    """
    cluster = {
        "worker": [f"127.0.0.1:{port}" for port in _free_ports(workers)]
    }
    processes, runs = [], []
    try:
        for index in range(workers):
            task = folder / f"worker{index}"
            (task / "out").mkdir(parents=True)
            log = open(task / "log.txt", "w")
            config = {
                "cluster": cluster,
                "task": {"type": "worker", "index": index},
            }
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        WORKER,
                        str(task / "out"),
                        "multi_worker",
                        str(task / "result.json"),
                    ],
                    env=_env(TF_CONFIG=json.dumps(config), **env),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            runs.append((task, log))
        codes = [process.wait(timeout=TIMEOUT) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        for _, log in runs:
            log.close()
    results = []
    for code, (task, _) in zip(codes, runs, strict=True):
        result = task / "result.json"
        results.append(
            (
                code,
                json.loads(result.read_text())["multi_worker"]
                if result.exists()
                else None,
                task / "out" / "multi_worker",
                (task / "log.txt").read_text(),
            )
        )
    return results
