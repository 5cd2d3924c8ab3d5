"""pinclip.atomic, the one module every durable write goes through, killed mid-write.

A child process rewrites one file and one folder in a loop, each version self-checking
(version number + a payload derived from it); the test SIGKILLs it at random moments and
checks that what is on disk is always one complete version, never half of one, and that
the folder is never missing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np

from pinclip.atomic import restore_dir

CHILD = r"""
import sys, time
from pathlib import Path
from pinclip.atomic import atomic_dir, atomic_open

root = Path(sys.argv[1])
def write_slowly(fh, version):  # a big write takes a while: the kill lands inside it
    fh.write(version.to_bytes(8, "little"))
    for _ in range(100):
        fh.write(bytes([version % 251]) * 5_000)
        time.sleep(0.0005)

version = 0
while True:
    version += 1
    with atomic_open(root / "file.bin") as fh:
        write_slowly(fh, version)
    with atomic_dir(root / "folder") as tmp:
        for name in ("a.bin", "b.bin", "c.bin"):
            with open(tmp / name, "wb") as fh:
                write_slowly(fh, version)
    print(version, flush=True)
"""


def _version(data: bytes) -> int:
    """The version a file holds; fails unless the file is that version, complete."""
    version = int.from_bytes(data[:8], "little")
    assert version >= 1 and len(data) == 8 + 500_000, f"truncated ({len(data)} bytes)"
    assert data[8:] == bytes([version % 251]) * 500_000, f"version {version} is torn"
    return version


def test_a_kill_at_any_moment_leaves_the_old_or_the_new_version(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    rng = np.random.default_rng(0)
    for _ in range(6):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, env=env
        )
        assert child.stdout is not None
        child.stdout.readline()  # one full round is on disk
        time.sleep(float(rng.uniform(0.0, 0.3)))  # then kill it somewhere mid-write
        child.send_signal(signal.SIGKILL)
        child.wait()

        file_version = _version((tmp_path / "file.bin").read_bytes())
        restore_dir(tmp_path / "folder")  # the reader's side of the protocol (a no-op on Linux)
        assert (tmp_path / "folder").is_dir(), "the folder vanished"
        folder = {_version(p.read_bytes()) for p in sorted((tmp_path / "folder").iterdir())}
        assert len(folder) == 1, f"folder mixes versions {folder}"
        (folder_version,) = folder
        assert folder_version in (file_version - 1, file_version)  # file first, then folder


def _no_plain_writes(monkeypatch):
    """Make Path.write_text / write_bytes fail: a writer that bypasses pinclip.atomic fails."""
    from pathlib import Path

    def refuse(self, *args, **kwargs):
        raise AssertionError(f"{self.name} written without pinclip.atomic")

    monkeypatch.setattr(Path, "write_text", refuse)
    monkeypatch.setattr(Path, "write_bytes", refuse)


def test_run_config_metrics_catalog_json_and_results_go_through_atomic(tmp_path, monkeypatch):
    import json

    from pinclip.data.builders._tables import write_json
    from pinclip.evaluate.tasks import EvalResult
    from pinclip.train.config import TrainConfig, save_config
    from pinclip.train.tracking import MetricsFile

    metrics = tmp_path / "run" / "metrics.jsonl"
    metrics.parent.mkdir()
    metrics.write_text('{"step": 1}\n{"step": 2}\n')  # before the patch: a run killed at step 2
    _no_plain_writes(monkeypatch)
    save_config(TrainConfig(), tmp_path / "run" / "config.yaml")
    tracker = MetricsFile(tmp_path / "run", step=1)  # resume at 1: rewrite keeps step 1 only
    tracker.close()
    assert [json.loads(line)["step"] for line in metrics.read_text().splitlines()] == [1]
    write_json(tmp_path / "catalog.json", {"name": "syn"})
    EvalResult("m", {}, None, "split").save(tmp_path / "results" / "m.json")
    assert json.loads((tmp_path / "results" / "m.json").read_text())["model"] == "m"
