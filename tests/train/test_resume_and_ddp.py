"""Exact resume after SIGKILL, and 2-rank DDP on CPU against one process (slow: subprocesses)."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from pinclip.train import load_config, train
from pinclip.train.checkpoint import list_checkpoints

pytestmark = pytest.mark.slow


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "pinclip", "train", *args]


def _weights(run_dir):
    return load_file(str(run_dir / "final" / "model.safetensors"))


def _kill_after_random_checkpoint(
    cmd: list[str], run_dir, rng: random.Random, timeout: float = 300
) -> int:
    """Start a run, SIGKILL it at a random moment after its n-th checkpoint; return n."""
    target = rng.randint(1, 4)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while len(list_checkpoints(run_dir)) < min(target, 2) or _latest_step(run_dir) < target:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "timed out waiting for a checkpoint"
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.5))  # land anywhere: mid-step, mid-validation or mid-save
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    return target


def _latest_step(run_dir) -> int:
    files = list_checkpoints(run_dir)
    return int(files[-1].stem.split("-")[1]) if files else 0


def test_sigkill_and_resume_ends_with_the_same_weights(tiny_overrides, tmp_path):
    overrides = tiny_overrides + ["max_steps=10", "ckpt_every=1", "val_every=5", "keep_last=3"]
    reference = train(load_config(None, overrides + [f"run_dir={tmp_path / 'ref'}"]))
    assert reference.steps == 10

    run_dir = tmp_path / "killed"
    cmd = _cli(*overrides, f"run_dir={run_dir}")
    rng = random.Random(1234)
    for _ in range(2):  # killed twice, resumed each time
        _kill_after_random_checkpoint(cmd + ["--resume"], run_dir, rng)
        assert not (run_dir / "final").exists()
    done = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]

    print((tmp_path / "ref" / "metrics.jsonl").read_text(), (run_dir / "metrics.jsonl").read_text())
    ref, resumed = _weights(tmp_path / "ref"), _weights(run_dir)
    assert ref.keys() == resumed.keys()
    for name in ref:
        assert torch.equal(ref[name], resumed[name]), f"{name} differs after kill-and-resume"
    steps = [json.loads(x)["step"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [s for s in steps if s] == sorted(s for s in steps if s), (
        "metrics log has replayed steps"
    )


def _torchrun(*args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "pinclip",
        "train",
        *args,
    ]


def test_two_ranks_stay_in_sync_and_match_one_process(tiny_overrides, tmp_path):
    # A frozen stem keeps BatchNorm in eval mode, so per-rank batches normalise like the global one.
    # The board term is on: its boards are gathered across ranks like the neighbors.
    overrides = tiny_overrides + [
        "max_steps=3",
        "val_every=3",
        "ckpt_every=3",
        "model.overrides.freeze_stem=true",
        "loss.board_weight=1",
    ]
    single = tmp_path / "single"
    train(load_config(None, overrides + [f"run_dir={single}"]))

    ddp = tmp_path / "ddp"
    cmd = _torchrun(*overrides, f"run_dir={ddp}")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]

    def losses(run_dir):
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        return [json.loads(x)["loss"] for x in lines if "loss" in json.loads(x)]

    assert losses(ddp) == pytest.approx(losses(single), abs=1e-4)
    a, b = _weights(single), _weights(ddp)
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=1e-4, rtol=1e-3, msg=name)

    def recalls(run_dir):  # each rank validated its share; the all-reduced recall is the same
        lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
        return [x["val_recall@10"] for x in lines if "val_recall@10" in x]

    assert recalls(ddp) == pytest.approx(recalls(single), abs=1e-6) and recalls(ddp)


def test_two_rank_kill_and_resume_ends_with_the_uninterrupted_weights(tiny_overrides, tmp_path):
    """2-rank DDP (gloo) with gradient accumulation, killed (launcher and both ranks, SIGKILL)
    after a checkpoint and resumed: the final weights equal an uninterrupted 2-rank run's."""
    overrides = tiny_overrides + [
        "max_steps=30",  # long enough that the kill lands before the last checkpoint
        "ckpt_every=2",
        "val_every=10",
        "optim.accum_steps=2",
        "model.overrides.freeze_stem=true",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    whole = tmp_path / "whole"
    done = subprocess.run(
        _torchrun(*overrides, f"run_dir={whole}"), capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]

    killed = tmp_path / "killed"
    cmd = _torchrun(*overrides, f"run_dir={killed}", "--resume")
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True
    )
    deadline = time.monotonic() + 300
    while _latest_step(killed) < 2:
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "timed out waiting for a checkpoint"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both ranks at once
    proc.wait()
    assert not (killed / "final").exists()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = _weights(whole), _weights(killed)
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs after a 2-rank kill-and-resume"


# A rank's entry point for the test below: resume, then report what the process still runs.
_RESUME_AND_REPORT = """
import json, os, sys
import torch.distributed as dist
from pinclip.train import load_config, train

result = train(load_config(None, sys.argv[2:]), resume=True)
tasks = "/proc/self/task"
threads = [open(f"{tasks}/{t}/comm").read().strip() for t in os.listdir(tasks)] if os.path.isdir(tasks) else []
with open(os.path.join(sys.argv[1], f"rank{os.environ['RANK']}.json"), "w") as fh:
    json.dump({"steps": result.steps, "loss": result.final_loss,
               "group": dist.is_initialized(), "threads": threads}, fh)
"""


def _finished_run_without_final(overrides, run_dir):
    """A run killed after its last checkpoint: every step done, final/ never written."""
    done = train(load_config(None, overrides + [f"run_dir={run_dir}"]))
    shutil.rmtree(run_dir / "final")
    last = list_checkpoints(run_dir)[-1]
    return done, load_file(str(last / "model.safetensors")), (run_dir / "metrics.jsonl").read_text()


def _assert_final_is(run_dir, weights):
    final = _weights(run_dir)
    assert final and set(final) <= set(weights)
    for name, value in final.items():
        assert torch.equal(value, weights[name]), f"final/ {name} is not the last checkpoint's"


def test_resuming_a_finished_run_writes_final_from_its_last_checkpoint(tiny_overrides, tmp_path):
    overrides = tiny_overrides + ["max_steps=2", "val_every=2"]
    run_dir = tmp_path / "done"
    before, last, metrics = _finished_run_without_final(overrides, run_dir)
    again = train(load_config(None, overrides + [f"run_dir={run_dir}"]), resume=True)
    assert (again.steps, again.final_loss) == (2, before.final_loss)  # nothing was re-run
    assert again.best_val_recall == before.best_val_recall
    _assert_final_is(run_dir, last)
    assert (run_dir / "metrics.jsonl").read_text() == metrics


def test_two_rank_resume_of_a_finished_run_exits_cleanly_on_every_rank(tiny_overrides, tmp_path):
    """The previous stop crashed rank 1 at exit here ("terminate called without an active
    exception"): the gloo process group was left to interpreter shutdown. Now every rank
    returns after final/ is written, with the group destroyed and no backend thread left."""
    overrides = tiny_overrides + ["max_steps=2", "val_every=2", "model.overrides.freeze_stem=true"]
    run_dir = tmp_path / "done"
    before, last, _ = _finished_run_without_final(overrides, run_dir)  # one process is enough

    script = tmp_path / "resume_and_report.py"
    script.write_text(_RESUME_AND_REPORT)
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        str(script), str(tmp_path), *overrides, f"run_dir={run_dir}",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "terminate called" not in done.stderr
    _assert_final_is(run_dir, last)
    for rank in range(2):
        report = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert not report["group"], f"rank {rank} returned with the process group still up"
        assert not [t for t in report["threads"] if "gloo" in t], (rank, report["threads"])
        assert (report["steps"], report["loss"]) == (2, before.final_loss), rank
