"""open_clip trained on the same catalog, warm pins and budget: the recipe users compare with.

The model is a custom open_clip CLIP config registered with `open_clip.add_model_config`:
a timm `tf_efficientnet_lite0` vision tower (open_clip's TimmModel, avg pool + linear
projection) and an HF MiniLM-L6 text tower (mean pooler + linear projection), i.e. the same
backbones PinCLIP starts from. No hub download: `pretrained=None`; the timm trunk is
initialised from the offline ImageNet EfficientNet-Lite0 weights and the HF tower from the
offline MiniLM, exactly PinCLIP's starting point. As in PinCLIP's CPU preset, most of both
backbones stays frozen (open_clip's own `lock_image_tower` / `lock_text_tower`); the last
`unlocked_groups` trunk stages and `unlocked_text_layers` MiniLM layers train.

Training runs open_clip's own loop, `open_clip_train.train.train_one_epoch`, with its
`ClipLoss`, `cosine_lr` schedule and AdamW parameter grouping, fed by a torch DataLoader over
the run's warm pins (image, title + description), for the same epochs and batch size as the
PinCLIP run whose config it copies. Losses go to metrics.jsonl through the tb_writer hook.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import Progress

from pinclip.atomic import atomic_write_text
from pinclip.data.catalog import TextColumn
from pinclip.errors import NotFoundError
from pinclip.evaluate.data import EvalData
from pinclip.log import quiet_root_records
from pinclip.model.pretrained import LITE0_MEAN, LITE0_STD

from .base import Embedder, PinEmbeddings, normalize, register_baseline
from .pretrained import embed_images

CONFIG_NAME = "pinclip-lite0-minilm"
CONFIG_FILE = "open_clip_config.json"
WEIGHTS_FILE = "open_clip_model.safetensors"


def open_clip_config(embed_dim: int = 256, image_size: int = 128, context_length: int = 64) -> dict:
    """The custom open_clip model config (towers as PinCLIP's, from offline weights)."""
    from pinclip.model.pretrained import minilm_path

    minilm = str(minilm_path())
    return {
        "embed_dim": embed_dim,
        "vision_cfg": {
            "timm_model_name": "tf_efficientnet_lite0",
            "timm_model_pretrained": False,
            "timm_pool": "avg",
            "timm_proj": "linear",
            "image_size": image_size,
        },
        "text_cfg": {
            "hf_model_name": minilm,
            "hf_tokenizer_name": minilm,
            "hf_proj_type": "linear",
            "hf_pooler_type": "mean_pooler",
            "context_length": context_length,
        },
    }


def create_open_clip(run_dir: Path, config: dict | None = None, *, pretrained: bool = True):
    """(model, train transform, eval transform, tokenizer) for the config saved in `run_dir`."""
    import open_clip

    path = run_dir / CONFIG_FILE
    if config is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(config, indent=2) + "\n")
    if not path.is_file():
        raise NotFoundError(f"{path} not found: train one with `pinclip train-open-clip`")
    registered = run_dir / "open_clip_models"
    registered.mkdir(exist_ok=True)
    atomic_write_text(registered / f"{CONFIG_NAME}.json", path.read_text())
    open_clip.add_model_config(registered)
    from transformers.utils import logging as hf_logging

    hf_level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # MiniLM's unused BERT pooler is reported, on purpose dropped
    # open_clip warns "initialized partially" on the root logger: the trunk is loaded below
    try:
        with quiet_root_records(open_clip, below=logging.ERROR):
            model, train_tf, eval_tf = open_clip.create_model_and_transforms(
                CONFIG_NAME,
                pretrained=None,
                pretrained_text=pretrained,
                output_dict=True,
                image_mean=LITE0_MEAN,
                image_std=LITE0_STD,
            )
    finally:
        hf_logging.set_verbosity(hf_level)
    if pretrained:
        from pinclip.model.pretrained import efficientnet_lite0_classifier

        state = {
            k: v
            for k, v in efficientnet_lite0_classifier().state_dict().items()
            if not k.startswith("classifier.")
        }
        missing, unexpected = model.visual.trunk.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"EfficientNet-Lite0 weights do not fit the open_clip trunk: missing {missing[:3]}, unexpected {unexpected[:3]}"
            )
    return model, train_tf, eval_tf, open_clip.get_tokenizer(CONFIG_NAME)


def lock_image_trunk(model: torch.nn.Module, unlocked_groups: int) -> None:
    """Freeze all but the last `unlocked_groups` layer groups of the timm trunk, the batch-norm
    statistics of the frozen ones included, leaving what the trunk computes unchanged.

    Not open_clip's `lock_image_tower(freeze_bn_stats=True)`: its converter turns timm's
    `BatchNormAct2d` (batch norm *and* the activation after it) into a plain
    `FrozenBatchNorm2d`, so every locked layer of EfficientNet-Lite0 lost its ReLU6. The tower
    then trained as a different, near-linear network, and the checkpoint reloaded into the
    original one (activations back, unlocked BN statistics learnt without them): its image
    embeddings ranked pins below random. timm's own `freeze` (parameters and statistics of
    the same layer groups open_clip's lock picks) keeps the activation
    (`FrozenBatchNormAct2d`)."""
    from timm.models import group_modules
    from timm.utils.model import freeze

    trunk = model.visual.trunk
    groups = group_modules(trunk, trunk.group_matcher(), reverse=True)  # module -> group
    last_locked = max(groups.values()) - unlocked_groups
    freeze(trunk, [name for name, group in groups.items() if group <= last_locked])


class _WarmPins(torch.utils.data.Dataset):
    def __init__(self, data, pins: np.ndarray, transform, tokenizer) -> None:
        self.data, self.pins, self.transform, self.tokenizer = data, pins, transform, tokenizer
        self.images = TextColumn(data.catalog.column("pins", "image"))  # Arrow, not a list

    def __len__(self) -> int:
        return len(self.pins)

    def __getitem__(self, i: int):
        pin = int(self.pins[i])
        image = self.transform(self.data.catalog.load_image(self.images[pin]))
        return image, self.tokenizer([self.data.texts[pin]])[0]


def trim_padding(tokens: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Drop trailing columns that are padding in every row. Exact for open_clip's HF tower,
    which masks pad tokens; saves most of the text cost (pin texts are ~10 of 64 tokens)."""
    length = int((tokens != pad_id).sum(1).max()) if tokens.numel() else 1
    return tokens[:, : max(length, 1)]


class _Collate:
    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, batch):
        images, tokens = torch.utils.data.default_collate(batch)
        return images, trim_padding(tokens, self.pad_id)


class _JsonlWriter:
    """open_clip's tb_writer hook -> metrics.jsonl rows like `pinclip train` writes."""

    def __init__(self, path: Path) -> None:
        self.file = path.open("w")
        self.rows: dict[int, dict] = {}

    def add_scalar(self, name: str, value: float, step: int) -> None:
        row = self.rows.setdefault(step + 1, {"step": step + 1})
        row[name.removeprefix("train/").replace("contrastive_loss", "clip")] = float(value)

    def flush(self) -> None:
        for step in sorted(self.rows):
            self.file.write(json.dumps(self.rows[step]) + "\n")
        self.rows.clear()
        self.file.flush()


def open_clip_param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """open_clip_train's AdamW groups: no decay on gains, biases, norms and logit_scale."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]

    def no_decay(n: str, p: torch.nn.Parameter) -> bool:  # open_clip_train's exclusion rule
        return p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n

    return [
        {"params": [p for n, p in named if no_decay(n, p)], "weight_decay": 0.0},
        {"params": [p for n, p in named if not no_decay(n, p)], "weight_decay": weight_decay},
    ]


def train_open_clip(
    cfg: Any,
    run_dir: str | Path,
    *,
    unlocked_groups: int = 1,
    unlocked_text_layers: int = 0,
    console: Console | None = None,
) -> Path:
    """Train the open_clip baseline on `cfg`'s catalog, warm pins, epochs, batch size and lr.

    `cfg` is a `pinclip.train.TrainConfig` (the CLI loads it): read by its fields, so
    evaluation never imports the training package."""
    import open_clip_train
    from open_clip import ClipLoss
    from open_clip_train.scheduler import cosine_lr
    from open_clip_train.train import train_one_epoch

    from pinclip.graph import load_split
    from pinclip.model import preset_info

    console = console or Console(stderr=True)
    run_dir = Path(run_dir)
    torch.manual_seed(cfg.seed)
    info = preset_info(cfg.model.preset)
    config = open_clip_config(embed_dim=info["embed_dim"], image_size=info["image_size"])
    model, train_tf, _, tokenizer = create_open_clip(run_dir, config)
    lock_image_trunk(model, unlocked_groups)
    model.lock_text_tower(unlocked_layers=unlocked_text_layers, freeze_layer_norm=True)
    data = load_split(cfg.data, console=Console(quiet=True))
    warm = data.split.warm
    loader = torch.utils.data.DataLoader(
        _WarmPins(data, warm, train_tf, tokenizer),
        batch_size=cfg.batch_size,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(cfg.seed),
        num_workers=0,
        collate_fn=_Collate(tokenizer.tokenizer.pad_token_id),
    )
    loader.num_batches, loader.num_samples = len(loader), len(loader) * cfg.batch_size
    epochs = cfg.epochs if not cfg.max_steps else -(-cfg.max_steps // len(loader))
    total = epochs * len(loader)

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        open_clip_param_groups(model, cfg.optim.weight_decay),
        lr=cfg.optim.lr,
        betas=(0.9, 0.98),
        eps=1e-6,
    )
    scheduler = cosine_lr(optimizer, cfg.optim.lr, cfg.optim.warmup_steps, total)
    args = SimpleNamespace(
        device="cpu",
        precision="fp32",
        distill=False,
        accum_freq=1,
        skip_scheduler=False,
        horovod=False,
        grad_clip_norm=cfg.optim.grad_clip,
        log_every_n_steps=1,
        batch_size=cfg.batch_size,
        world_size=1,
        rank=0,
        local_rank=0,
        wandb=False,
    )
    writer = _JsonlWriter(run_dir / "metrics.jsonl")
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    trainable = sum(p.numel() for _, p in named)
    console.print(
        f"open_clip {CONFIG_NAME}: {trainable / 1e6:.2f}M trainable parameters, "
        f"{epochs} epochs × {len(loader)} steps on {len(warm)} warm pins"
    )
    with Progress(console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task("open_clip train", total=epochs)
        for epoch in range(epochs):
            with quiet_root_records(open_clip_train):  # it logs every step at INFO
                train_one_epoch(
                    model,
                    {"train": _DataInfo(loader)},
                    ClipLoss(),
                    epoch,
                    optimizer,
                    None,
                    scheduler,
                    None,
                    args,
                    tb_writer=writer,
                )
            writer.flush()
            progress.advance(task)
    from safetensors.torch import save_model

    save_model(model, str(run_dir / WEIGHTS_FILE))
    atomic_write_text(
        run_dir / "train_info.json",
        json.dumps(
            {
                "source_config": asdict(cfg),
                "epochs": epochs,
                "steps": epochs * len(loader),
                "warm_pins": len(warm),
                "unlocked_groups": unlocked_groups,
                "unlocked_text_layers": unlocked_text_layers,
                "trainable_parameters": trainable,
            },
            indent=2,
        )
        + "\n",
    )
    return run_dir


class _DataInfo:
    """open_clip_train's DataInfo shape: a dataloader and an epoch setter."""

    def __init__(self, dataloader) -> None:
        self.dataloader = dataloader

    def set_epoch(self, epoch: int) -> None:
        pass


@register_baseline(
    "open_clip", arg="RUN_DIR", help="an open_clip CLIP trained by `pinclip train-open-clip`"
)
class OpenCLIPEmbedder(Embedder):
    """A trained open_clip baseline: image and text embeddings; a pin = their normalised mean."""

    def __init__(self, path: str | Path, name: str = "open_clip") -> None:
        from safetensors.torch import load_model

        self.path, self.name = Path(path), name
        self.model, _, self.transform, self.tokenizer = create_open_clip(
            self.path, pretrained=False
        )
        weights = self.path / WEIGHTS_FILE
        if not weights.is_file():
            raise NotFoundError(f"{weights} not found: train it with `pinclip train-open-clip`")
        load_model(self.model, str(weights))
        self.model.eval()
        self._pins: dict[int, PinEmbeddings] = {}

    @torch.no_grad()
    def embed_texts(self, texts: list[str], batch_size: int = 256) -> torch.Tensor:
        pad = self.tokenizer.tokenizer.pad_token_id
        out = [
            self.model.encode_text(
                trim_padding(self.tokenizer(texts[i : i + batch_size]), pad)
            ).float()
            for i in range(0, len(texts), batch_size)
        ]
        return normalize(torch.cat(out))

    def embed_pins(self, data: EvalData) -> PinEmbeddings:
        key = id(data)
        if key not in self._pins:
            image = normalize(
                embed_images(self.model, self.transform, data, lambda m, x: m.encode_image(x))
            )
            text = self.embed_texts(data.texts)
            self._pins[key] = PinEmbeddings(normalize(image + text), image, text)
        return self._pins[key]

    def trained_on(self) -> str | None:
        return str(self.path) if (self.path / "metrics.jsonl").is_file() else None
