"""The README's distributed-training snippet runs as printed."""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def _snippet():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        readme = handle.read()
    section = readme.split("## Distributed training", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_readme_distributed_snippet_runs(tmp_path):
    script = tmp_path / "snippet.py"
    script.write_text(_snippet())
    path = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
    completed = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.strip().splitlines()[-1] == "True"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "distributed_int8.json",
        "distributed_int8.tflite",
        "snippet.py",
    ]
