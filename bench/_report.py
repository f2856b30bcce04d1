"""Writes a benchmark's results file: command, machine, markdown tables, JSON line."""

import json
import os
import sys


def write_results(path, title, result, tables):
    machine = result.get("machine", {})
    versions = machine.get("versions", {})
    lines = [
        f"# {title}",
        "",
        f"Command: `python {' '.join([os.path.relpath(sys.argv[0])] + sys.argv[1:])}`",
        "",
        f"Machine: {machine.get('nproc')} CPUs (`nproc`), {machine.get('cpu')}; "
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
