"""Writes a benchmark's results file: command, machine, markdown tables, JSON
line."""

import json
import os
import platform
import sys


def write_results(path, title, result, tables):
    machine = result.get("machine", {})
    versions = machine.get("versions", {})
    lines = [
        f"# {title}",
        "",
        "Command: `python "
        f"{' '.join([os.path.relpath(sys.argv[0])] + sys.argv[1:])}`",
        "",
        f"Machine: {machine.get('nproc')} CPUs (`nproc`), "
        f"{machine.get('cpu')}; "
        + ", ".join(f"{k} {v}" for k, v in versions.items()),
        "",
        f"Wall time: {result.get('wall_s')} s",
        "",
        tables,
        "",
        "JSON:",
        "",
        "```json",
        json.dumps(result),
        "```",
        "",
    ]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(lines))


def publish(result, tables, output=None, title=None):
    """Prints the JSON line, a blank line and the markdown tables; with
    `output`, also writes them as a results file titled `title`."""
    print(json.dumps(result))
    print()
    print(tables)
    if output:
        write_results(output, title, result, tables)


def machine_info(extra_versions=None):
    """CPU count and model, and the versions of what the benchmark ran."""
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import keras
    import tensorflow as tf

    import keras_tflq

    versions = {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_tflq": keras_tflq.__version__,
        **(extra_versions or {}),
    }
    try:
        import ai_edge_litert

        versions["ai_edge_litert"] = getattr(ai_edge_litert, "__version__", "?")
    except ImportError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "versions": versions}
