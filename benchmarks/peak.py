"""``python -m benchmarks.peak RESULT_FILE COMMAND...``: run COMMAND, record its own peak RSS.

Linux counts in a child's ``ru_maxrss`` the memory of whatever process it was
forked from, up to its ``exec``: a child of the (large) benchmark process
would report the benchmark's size. This small launcher stands in between: it
runs COMMAND with the same stdin, stdout and stderr, reaps it with ``wait4``,
writes ``{"max_rss_kib", "cpu"}`` to RESULT_FILE and exits with its code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def main() -> int:
    result, command = Path(sys.argv[1]), sys.argv[2:]
    process = subprocess.Popen(command)
    _, status, usage = os.wait4(process.pid, 0)
    cpu = usage.ru_utime + usage.ru_stime
    result.write_text(json.dumps({"max_rss_kib": usage.ru_maxrss, "cpu": cpu}))
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    raise SystemExit(main())
