"""`pinclip embed --engine ray` on a real two-node Ray cluster, joined by address like a user
would, with one worker killed mid-job; and the one-line error when Ray is not installed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pinclip.data.builders.synthetic import build_synthetic_catalog
from pinclip.errors import MissingExtraError
from pinclip.serve import embed_catalog, read_embeddings
from pinclip.serve.embed import MANIFEST_FILE, PARTS_DIR, part_name

PINS, PART = 480, 12


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (from /proc): only what this test started."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _actor_pids() -> list[int]:
    pids = []
    for pid in _descendants(os.getpid()):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "_RayPartEmbedder" in cmdline:
            pids.append(pid)
    return pids


def _done(out: Path) -> list[int]:
    try:
        return json.loads((out / MANIFEST_FILE).read_text())["done"]
    except (OSError, ValueError):
        return []


@pytest.fixture(scope="module")
def ray_catalog(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ray") / "catalog"
    build_synthetic_catalog(root, pins=PINS, seed=1, size=32, progress=False)
    return root


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_two_node_cluster_joined_by_address_survives_a_killed_worker(
    tmp_path, model_dir, ray_catalog
):
    cluster_utils = pytest.importorskip("ray.cluster_utils")
    cluster = cluster_utils.Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False}
    )
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        out = tmp_path / "shared" / "emb"  # both nodes see it; given as a file:// URL
        cmd = [
            str(Path(sys.executable).with_name("pinclip")),
            "embed",
            str(model_dir),
            str(ray_catalog),
            f"file://{out}",
            "--engine", "ray",
            "--ray-address", cluster.address,
            "--backend", "torch",
            "--device", "cpu",
            "--workers", "2",
            "--batch-size", "4",
            "--part-size", str(PART),
        ]  # fmt: skip
        env = {**os.environ, "RAY_ADDRESS": ""}  # the flag alone must be enough
        log = tmp_path / "driver.log"
        driver = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 300  # Ray start-up is slow on a loaded 2-core machine
        while len(_actor_pids()) < 2 or not _done(out):
            assert driver.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the actors never started embedding"
            time.sleep(0.05)
        before = {p: (out / part_name(p)).stat().st_mtime_ns for p in _done(out)}
        victim = _actor_pids()[0]
        os.kill(victim, signal.SIGKILL)  # one worker dies mid-job
        n_parts = PINS // PART
        assert len(before) < n_parts, "the job ended before a worker could be killed"
        assert driver.wait(timeout=300) == 0, log.read_text()
        # Ray restarted the worker, the killed part was re-run, finished parts were not.
        assert sorted(_done(out)) == list(range(n_parts))
        for part, mtime in before.items():
            assert (out / part_name(part)).stat().st_mtime_ns == mtime
        assert len(list((out / PARTS_DIR).glob("part-*.parquet"))) == n_parts
    finally:
        cluster.shutdown()
    ids, emb = read_embeddings(f"file://{out}")
    ref = embed_catalog(model_dir, ray_catalog, tmp_path / "local", backend="torch", part_size=96)
    ref_ids, ref_emb = read_embeddings(ref)
    assert ids == ref_ids  # every pin exactly once, in catalog order
    np.testing.assert_allclose(emb["pin_emb"], ref_emb["pin_emb"], atol=1e-4)


def test_missing_ray_is_a_one_line_error(monkeypatch, model_dir, catalog_dir, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` sees without the extra
    with pytest.raises(MissingExtraError, match=r"pip install 'pinclip\[ray\]'") as err:
        embed_catalog(model_dir, catalog_dir, tmp_path / "emb", engine="ray")
    assert "\n" not in str(err.value)
