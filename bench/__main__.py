"""Run every benchmark (`python -m bench`) or the ones named (`python -m bench prefix_cache slack_ack`)."""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules([str(HERE)]) if not m.name.startswith("_"))


def main(argv: list[str]) -> int:
    wanted = argv or names()
    unknown = sorted(set(wanted) - set(names()))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(names())}", file=sys.stderr)
        return 2
    failed = []
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}
    for name in wanted:
        print(f"\n=== bench.{name} ===", flush=True)
        # Each in a fresh process: peak memory and timings must not leak from one to the next.
        if subprocess.run([sys.executable, "-m", f"bench.{name}"], env=env).returncode != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
