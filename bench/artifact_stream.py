"""Artifact streaming benchmark: storing and reading back a large weight file, streamed
(``write_artifact_file`` / ``read_artifact_to``) next to the in-memory path
(``write_artifact(bytes)`` / ``read_artifact`` -> bytes), in one process.

Writes a file of random bytes (``--size-mb``, default 500) in a temporary directory,
stores it as an encrypted artifact in a temporary MEDSERVE_HOME both ways, reads each
back to a file, checks the output's sha256 against the input's, and rotates the
master key once (header re-wrapped, body copied). For each step it prints seconds,
MB/s of payload (1 MB = 10^6 bytes) and the process's peak resident memory (VmHWM)
during that step: the peak is reset before each step through /proc/self/clear_refs
(Linux); where that is not possible the column is the process's peak so far
(``resource.getrusage``). Everything it writes is deleted at the end, on errors too.

    .venv/bin/python bench/artifact_stream.py
    .venv/bin/python bench/artifact_stream.py --size-mb 100
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import logging
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from medserve.config import Settings
from medserve.core.files import write_file_atomic
from medserve.storage.artifacts import (
    read_artifact,
    read_artifact_to,
    rotate_master_key,
    write_artifact,
    write_artifact_file,
)

MB = 1_000_000
GENERATE_PIECE = 4 << 20


@dataclass(frozen=True)
class Step:
    path: str
    operation: str
    seconds: float
    peak_rss_mb: float


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS; False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / MB
    except OSError:
        pass
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return usage / MB if sys.platform == "darwin" else usage * 1024 / MB


def measure(path: str, operation: str, action: Callable[[], object], steps: list[Step]) -> None:
    gc.collect()
    reset_peak_rss()
    started = time.perf_counter()
    action()
    seconds = time.perf_counter() - started
    steps.append(Step(path, operation, seconds, peak_rss_mb()))


def file_sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def generate(path: Path, size: int) -> None:
    with path.open("wb") as file:
        for start in range(0, size, GENERATE_PIECE):
            file.write(os.urandom(min(GENERATE_PIECE, size - start)))


def run(size_mb: int) -> list[Step]:
    size = size_mb * MB
    steps: list[Step] = []
    with tempfile.TemporaryDirectory(prefix="medserve-bench-stream-") as scratch:
        root = Path(scratch)
        settings = Settings(home=root / "home")
        source = root / "weights.bin"
        generate(source, size)
        source_sha256 = file_sha256(source)
        write_artifact(settings, b"warm up")  # the key file, the lock, imports

        # Streamed: file -> artifact -> file.
        refs = []
        measure(
            "streamed", "write", lambda: refs.append(write_artifact_file(settings, source)), steps
        )
        streamed = refs[0]
        dest = root / "streamed.out"
        measure(
            "streamed",
            "read",
            lambda: read_artifact_to(settings, streamed.path, streamed.sha256, dest),
            steps,
        )
        if file_sha256(dest) != source_sha256:
            raise SystemExit("streamed read returned other bytes than were written")
        dest.unlink()
        measure("streamed", "rotate master key", lambda: rotate_master_key(settings), steps)
        (settings.home / streamed.path).unlink()

        # In memory: the whole payload as bytes, both ways.
        def write_in_memory() -> None:
            refs.append(write_artifact(settings, source.read_bytes()))

        measure("in memory", "write", write_in_memory, steps)
        in_memory = refs[1]
        dest = root / "in_memory.out"

        def read_in_memory() -> None:
            write_file_atomic(dest, read_artifact(settings, in_memory.path, in_memory.sha256))

        measure("in memory", "read", read_in_memory, steps)
        if file_sha256(dest) != source_sha256:
            raise SystemExit("in-memory read returned other bytes than were written")
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=500, help="payload size in MB (10^6)")
    args = parser.parse_args()
    logging.getLogger("medserve.keystore").setLevel(logging.ERROR)  # the throwaway key file
    exact = reset_peak_rss()
    baseline = peak_rss_mb()
    steps = run(args.size_mb)
    print(f"artifact of {args.size_mb} MB random bytes; RSS before: {baseline:.0f} MB")
    header = f"{'path':<10} {'operation':<18} {'seconds':>8} {'MB/s':>8} {'peak RSS MB':>12}"
    print(header)
    print("-" * len(header))
    for step in steps:
        rate = args.size_mb / step.seconds
        print(
            f"{step.path:<10} {step.operation:<18} {step.seconds:>8.2f} {rate:>8.0f} "
            f"{step.peak_rss_mb:>12.0f}"
        )
    if not exact:
        print("(peak RSS is the process's peak so far: /proc/self/clear_refs is not writable)")


if __name__ == "__main__":
    main()
