"""Where training metrics go: metrics.jsonl always, TensorBoard and MLflow when asked.

Every tracker has the same two methods, `write(record)` (a dict with "step" and numbers)
and `close()`; `open_trackers` builds the ones a config asks for, on the main rank only.

- metrics.jsonl: one JSON line per record, truncated to the resumed step so a resume
  never duplicates lines;
- TensorBoard (`tensorboard: true`, the default; the 'tensorboard' extra): RUN/tensorboard/.
  Asked for and not installed: a warning says how to install it, the run goes on;
- MLflow (`mlflow: URI`, e.g. http://host:5000 or sqlite:///mlflow.db; the 'mlflow' extra):
  params = the flattened config, metrics per step; a resume continues the same MLflow run
  (its id is kept in RUN/mlflow_run_id).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Protocol

from pinclip.atomic import atomic_write_text
from pinclip.errors import require_extra

log = logging.getLogger(__name__)


class Tracker(Protocol):
    def write(self, record: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


class MetricsFile:
    """RUN/metrics.jsonl."""

    def __init__(self, run_dir: Path, step: int) -> None:
        path = Path(run_dir) / "metrics.jsonl"
        kept = []
        if path.exists():
            kept = [
                line
                for line in path.read_text().splitlines()
                if line and json.loads(line)["step"] <= step
            ]
        # the rows up to the resumed step, whole or not at all: a kill here must not lose them
        atomic_write_text(path, "".join(line + "\n" for line in kept))
        self.fh = path.open("a")

    def write(self, record: dict[str, Any]) -> None:
        self.fh.write(json.dumps(record) + "\n")
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


class TensorBoard:
    """RUN/tensorboard/ event files (torch's SummaryWriter)."""

    def __init__(self, run_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"))

    def write(self, record: dict[str, Any]) -> None:
        for key, value in record.items():
            if key != "step":
                self.writer.add_scalar(key, value, record["step"])

    def close(self) -> None:
        self.writer.close()


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out |= _flatten(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = str(value)[:500]  # MLflow's param value limit
    return out


class MLflow:
    """One MLflow run per training run, through MlflowClient (no global active-run state)."""

    def __init__(self, uri: str, run_dir: Path, config: dict[str, Any]) -> None:
        require_extra("mlflow", "mlflow tracking (the training config's `mlflow:`)")
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=uri)
        id_file = Path(run_dir) / "mlflow_run_id"
        if id_file.is_file():
            self.run_id = id_file.read_text().strip()
            self.client.update_run(self.run_id, status="RUNNING")
            return
        experiment = self.client.get_experiment_by_name("pinclip")
        experiment_id = (
            experiment.experiment_id if experiment else self.client.create_experiment("pinclip")
        )
        run = self.client.create_run(experiment_id, run_name=Path(run_dir).name)
        self.run_id = run.info.run_id
        params = [Param(k, v) for k, v in sorted(_flatten(config).items())]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=params[start : start + 100])
        atomic_write_text(id_file, self.run_id + "\n")

    def write(self, record: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        now, step = int(time.time() * 1000), int(record["step"])
        metrics = [
            Metric(key.replace("@", "_at_"), float(value), now, step)
            for key, value in record.items()
            if key != "step"
        ]
        self.client.log_batch(self.run_id, metrics=metrics)

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


class Trackers:
    """All the trackers of one run behind the same `write` / `close`."""

    def __init__(self, trackers: list[Tracker]) -> None:
        self.trackers = trackers

    def write(self, record: dict[str, Any]) -> None:
        for tracker in self.trackers:
            tracker.write(record)

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.close()


def open_trackers(
    run_dir: Path,
    step: int,
    *,
    enabled: bool,
    tensorboard: bool = False,
    mlflow: str | None = None,
    params: dict[str, Any] | None = None,
) -> Trackers:
    """metrics.jsonl, plus TensorBoard and an MLflow tracking URI if asked for (`params`: the
    resolved config MLflow records); none on ranks other than the main one."""
    if not enabled:
        return Trackers([])
    trackers: list[Tracker] = [MetricsFile(run_dir, step)]
    if tensorboard:
        try:
            trackers.append(TensorBoard(run_dir))
        except ImportError:
            log.warning(
                "tensorboard=true but the 'tensorboard' package is not installed, so nothing "
                "is written to %s: pip install 'pinclip[tensorboard]', or set tensorboard=false "
                "(metrics.jsonl has every number)",
                Path(run_dir) / "tensorboard",
            )
    if mlflow:
        trackers.append(MLflow(mlflow, run_dir, params or {}))
    return Trackers(trackers)
