"""Run one benchmark and keep what it printed, with where and when, as a result file.

``python benchmarks/record.py benchmarks/segmentation.py [ARGS...]`` runs the script with this Python, passes its
JSON lines through to the terminal and writes ``benchmarks/results/<script>.jsonl``: a first line
``{"name": "provenance", "date", "command", "cpu", "cores", "gpu", "load_average", "python", "torch",
"msmae"}`` (the load average: a shared machine's timings depend on it), then every
JSON line the script printed, unchanged. The documentation's benchmark page quotes only these files.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def provenance(command: list[str]) -> dict:
    import torch

    import msmae
    from msmae.utils import cpu_model

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"name": "provenance", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(["python"] + command), "cpu": cpu_model(), "cores": os.cpu_count(), "gpu": gpu,
            "load_average": round(os.getloadavg()[0], 1),
            "python": platform.python_version(), "torch": torch.__version__, "msmae": msmae.__version__}


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    head = provenance(argv)
    proc = subprocess.Popen([sys.executable] + argv, stdout=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stdout:
        sys.stdout.write(line)
        if line.lstrip().startswith("{"):
            lines.append(line.strip())
    if proc.wait() != 0:
        print(f"record: {argv[0]} failed (exit status {proc.returncode}); no result file written", file=sys.stderr)
        return proc.returncode
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / (Path(argv[0]).stem + ".jsonl")
    tmp = out.with_suffix(".jsonl.tmp")
    tmp.write_text("\n".join([json.dumps(head)] + lines) + "\n")
    tmp.replace(out)
    print(f"record: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
