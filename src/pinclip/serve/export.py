"""Export PinCLIP to ONNX (image tower from pixels, text tower with its encoder, fusion), int8.

int8 is chosen per part by measurement: the image graph gets static QDQ per-channel
quantization of its CNN stem only (Conv+ReLU6+Add, calibrated on catalog images; dynamic
int8 turns convs into slow ConvInteger); the text and fusion graphs get dynamic int8
MatMuls. Each part tries its options, most aggressive first, and keeps the first that is
faster than fp32 on this machine and within the cosine threshold. Every export ends with a
parity check against PyTorch on real catalog pins and fails loudly below the threshold.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from pinclip.atomic import atomic_dir
from pinclip.errors import InputError, PinclipError
from pinclip.model import PinCLIP
from pinclip.model.image_tower import ViTImageTower
from pinclip.model.model import text_mask
from pinclip.model.quantize import TEXT_OPTIONS, quantize_matmul_dynamic

from .embedder import (
    FUSION_INPUTS,
    ONNX_MANIFEST,
    OnnxEmbedder,
    TorchEmbedder,
    fusion_feeds,
    fusion_length,
    model_fingerprint,
    pad_text,
)

OPSET = 17
PARITY_THRESHOLD = 0.99


class ParityError(PinclipError):
    """The exported graphs disagree with PyTorch: do not serve them."""


class _ImagePart(nn.Module):
    def __init__(self, model: PinCLIP) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.model.image(images=pixels)
        return self.model.image_head(tokens.pooled, tokens.native), tokens.patches


class _TextPart(nn.Module):
    def __init__(self, model: PinCLIP) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        tokens = self.model.text(text={"input_ids": input_ids, "attention_mask": attention_mask})
        return self.model.text_head(tokens.pooled, tokens.native), tokens.states


class _FusionPart(nn.Module):
    def __init__(self, model: PinCLIP, levels: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("levels", levels, persistent=False)

    def forward(self, image_patches, text_states, text_mask, image_emb, text_emb):
        fused = self.model.fusion(
            image_patches=image_patches,
            image_levels=self.levels,
            text_states=text_states,
            text_mask=text_mask,
        )
        return self.model.pin_embedding(fused, image_emb, text_emb)


@dataclass
class ExportReport:
    out: str
    graphs: dict[str, str]
    int8: bool
    parity: dict[str, float]  # min cosine over samples, per embedding
    timings_ms: dict[str, float] = field(default_factory=dict)  # per part and option, batch 32
    quantization: dict[str, str] = field(default_factory=dict)  # int8 option kept per part
    model_fingerprint: str | None = None  # the source model's identity (embedder.model_fingerprint)


def _export(module: nn.Module, args: tuple, path: Path, inputs, outputs, dynamic) -> None:
    module.eval()  # the exporter restores the wrapper's mode afterwards, and with it the model's
    torch.onnx.export(
        module,
        args,
        str(path),
        input_names=inputs,
        output_names=outputs,
        dynamic_axes=dynamic,
        opset_version=OPSET,
        do_constant_folding=True,
        dynamo=False,
    )


def export_fp32(
    model: PinCLIP, out: Path, sample_pixels: torch.Tensor, sample_texts: list[str]
) -> dict[str, str]:
    """Write image.onnx, text.onnx, fusion.onnx (batch dynamic; text length dynamic but in fusion)."""
    model = model.eval()
    tok = model.tokenize(sample_texts)
    with torch.no_grad():
        length = model.config.text.max_length
        tok = {k: torch.nn.functional.pad(v, (0, length - v.shape[1])) for k, v in tok.items()}
        img = model.image(images=sample_pixels)
        txt = model.text(text=tok)
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # the fused encoder-layer op has no ONNX form
    try:
        with torch.no_grad():
            _export_all(model, out, sample_pixels, tok, img, txt)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return {"image": "image.onnx", "text": "text.onnx", "fusion": "fusion.onnx"}


def _export_all(model, out, sample_pixels, tok, img, txt) -> None:
    _export(
        _ImagePart(model),
        (sample_pixels,),
        out / "image.onnx",
        ["pixels"],
        ["image_emb", "image_patches"],
        {"pixels": {0: "batch"}, "image_emb": {0: "batch"}, "image_patches": {0: "batch"}},
    )
    _export(
        _TextPart(model),
        (tok["input_ids"], tok["attention_mask"]),
        out / "text.onnx",
        ["input_ids", "attention_mask"],
        ["text_emb", "text_states"],
        {
            "input_ids": {0: "batch", 1: "seq"},
            "attention_mask": {0: "batch", 1: "seq"},
            "text_emb": {0: "batch"},
            "text_states": {0: "batch", 1: "seq"},
        },
    )
    image_emb = model.image_head(img.pooled, img.native)
    text_emb = model.text_head(txt.pooled, txt.native)
    _export(
        _FusionPart(model, img.levels),
        (img.patches, txt.states, txt.mask, image_emb, text_emb),
        out / "fusion.onnx",
        list(FUSION_INPUTS),
        ["pin_emb"],
        {**{name: {0: "batch"} for name in FUSION_INPUTS}, "pin_emb": {0: "batch"}},
    )  # text sequence fixed at max_length: see pad_text


# Names of the CNN stem's nodes in the image graph (the tower's `stem` module). Only these
# are quantized: the hybrid-ViT layers after it (LayerNorm, attention, softmax) stay fp32.
STEM_PREFIX = "/image/stem/"
# The high-resolution first stages of an EfficientNet: after BatchNorm folding their
# activation ranges differ so much between channels that one per-tensor int8 scale loses them
# (measured: stem cosine 0.96 with, 0.997 without them); they stay fp32 in `stem-late`.
EARLY_STEM = ("/conv_stem/", "/blocks.0/", "/blocks.1/")
# Per-part int8 options, most aggressive first; the export keeps the first one that is
# faster than fp32 and within the cosine threshold (see docs/serving.md for measurements).
IMAGE_OPTIONS = ("stem-all", "stem-late")
VIT_IMAGE_OPTIONS = ("matmul-all",)
FUSION_OPTIONS = ("matmul-all",)


def _unshare_initializers(graph, prefix: str) -> None:
    """Give nodes under `prefix` their own copy of any initializer that nodes outside it also
    use: the exporter merges equal constants (e.g. zero biases), and quantizing the stem's
    copy would otherwise hand dequantized values to the fp32 transformer layers too."""
    import onnx

    inits = {i.name: i for i in graph.initializer}
    users: dict[str, set[bool]] = {}
    for node in graph.node:
        for name in node.input:
            if name in inits:
                users.setdefault(name, set()).add(node.name.startswith(prefix))
    shared = {name for name, kinds in users.items() if len(kinds) == 2}
    for name in shared:
        copy = onnx.TensorProto()
        copy.CopyFrom(inits[name])
        copy.name = f"{name}__stem"
        graph.initializer.append(copy)
    for node in graph.node:
        if node.name.startswith(prefix):
            for i, name in enumerate(node.input):
                if name in shared:
                    node.input[i] = f"{name}__stem"


def quantize_image_static(
    src: Path, dst: Path, calibration: np.ndarray, option: str = "stem-late"
) -> None:
    """Static QDQ int8 of the CNN stem, calibrated on real catalog pixels.

    Conv, its ReLU6 (Clip) and the residual Adds are quantized together, so each Conv+Clip
    runs as one int8 conv whose output scale covers [0, 6] rather than the raw pre-activation
    range. Weights per-channel symmetric int8, activations uint8. `stem-late` leaves the
    early high-resolution stages in fp32.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([calibration[i : i + 16] for i in range(0, len(calibration), 16)])

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {"pixels": batch}

    pre = dst.with_suffix(".pre.onnx")
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)  # folds, optimizes
    graph = onnx.load(str(pre))
    _unshare_initializers(graph.graph, STEM_PREFIX)
    onnx.save(graph, str(pre))
    stem = [n.name for n in graph.graph.node if n.name.startswith(STEM_PREFIX)]
    if not stem:
        raise RuntimeError(f"no CNN stem nodes (prefix {STEM_PREFIX!r}) in {src}")
    if option == "stem-late":
        stem = [n for n in stem if not any(e in n for e in EARLY_STEM)]
    elif option != "stem-all":
        raise InputError(f"unknown image int8 option {option!r}; use one of {IMAGE_OPTIONS}")
    quantize_static(
        str(pre),
        str(dst),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        op_types_to_quantize=["Conv", "Clip", "Add"],
        nodes_to_quantize=stem,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    pre.unlink(missing_ok=True)


def _run_graph(
    path: Path, feeds: dict[str, np.ndarray], repeats: int = 5
) -> tuple[np.ndarray, float]:
    """The graph's first output on `feeds` and the median milliseconds of one run."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {i.name: feeds[i.name] for i in session.get_inputs()}  # graphs may drop unused ones
    first = session.run(None, feeds)[0]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - start)
    return first, 1000 * float(np.median(times)) if times else float("nan")


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
    return float(cos.min())


def parity(
    reference: TorchEmbedder, candidate, pixels: np.ndarray, texts: list[str]
) -> dict[str, float]:
    """Minimum cosine per embedding between two embedders on the same pins."""
    ref, got = reference.embed_pins(pixels, texts), candidate.embed_pins(pixels, texts)
    return {key: _min_cosine(a, got[key]) for key, a in ref.items()}


def refuse_vlm_export(model_dir: Path) -> None:
    """A VLM backbone is not exported: its three passes splice prompts around the text and
    run the processor's image pipeline, which these per-part graphs do not cover."""
    from pinclip.model.config import is_vlm_spec
    from pinclip.model.model import read_config

    if (model_dir / "config.json").is_file() and is_vlm_spec(read_config(model_dir).backbone):
        raise InputError(
            f"{model_dir.name} stands on a vision-language model (hf-vlm:): ONNX export does not "
            "apply to it. Serve it with PyTorch (--backend torch, --device cuda); merge its "
            "adapters first for speed (PinCLIP.save_merged or `pinclip merge`)"
        )


def export_onnx(
    model_dir: str | Path,
    out: str | Path,
    samples: Sequence[tuple[Image.Image, str]],
    *,
    int8: bool = False,
    threshold: float = PARITY_THRESHOLD,
) -> ExportReport:
    """Export, optionally quantize (per part, kept only if faster), then check parity.

    `samples` are real catalog pins (image, text): the first half calibrates the static
    quantization (pass >= 128 for >= 64 calibration images), all of them are the parity set,
    so half of it was never seen by calibration. Raises ParityError if any embedding's min
    cosine < threshold.
    """
    model_dir, out = Path(model_dir), Path(out)
    refuse_vlm_export(model_dir)
    if len(samples) < 2:
        raise InputError("export needs at least 2 catalog samples for calibration and parity")
    reference = TorchEmbedder.load(model_dir)
    pixels = np.stack([reference.preprocess(img) for img, _ in samples]).astype(np.float32)
    texts = [t for _, t in samples]
    with atomic_dir(out) as tmp:  # `out` is the previous export until this one passes parity
        graphs = export_fp32(reference.model, tmp, torch.from_numpy(pixels[:2]), texts[:2])
        shutil.copy(model_dir / "config.json", tmp / "config.json")
        for folder in ("text_encoder", "backbone"):  # what rebuilds the tokenizer offline
            if (model_dir / folder).is_dir():
                shutil.copytree(model_dir / folder, tmp / folder)
        timings: dict[str, float] = {}
        choice: dict[str, str] = {}
        if int8:
            calibration = pixels[: max(1, len(pixels) // 2)]
            graphs, choice = _quantize_parts(
                tmp, graphs, reference, pixels, calibration, texts, timings, threshold
            )
        manifest = json.dumps({"graphs": graphs, "int8": int8}, indent=2) + "\n"
        (tmp / ONNX_MANIFEST).write_text(manifest)
        scores = parity(reference, OnnxEmbedder(tmp), pixels, texts)
        bad = {k: v for k, v in scores.items() if v < threshold}
        if bad:
            failed = out.with_name(out.name + ".failed")
            shutil.rmtree(failed, ignore_errors=True)
            shutil.copytree(tmp, failed)
            raise ParityError(
                f"ONNX export of {model_dir} disagrees with PyTorch on {len(samples)} catalog "
                f"pins: min cosine {bad} < {threshold} (graphs left in {failed} for "
                "inspection); try without --int8"
            )
        report = ExportReport(
            str(out), graphs, int8, scores, timings, choice, model_fingerprint(model_dir)
        )
        (tmp / ONNX_MANIFEST).write_text(json.dumps(asdict(report), indent=2) + "\n")
    return report


def _quantize_parts(
    tmp: Path, graphs, reference: TorchEmbedder, pixels, calibration, texts, timings, threshold
) -> tuple[dict[str, str], dict[str, str]]:
    """Try each part's int8 options (most aggressive first) and keep the first one that is
    faster than fp32 at batch 32 with its output embedding within `threshold` min cosine of
    fp32 on the catalog samples. Returns the chosen graphs and option per part."""
    import onnxruntime as ort

    def part_feeds(pix: np.ndarray, txt: list[str]) -> dict[str, dict[str, np.ndarray]]:
        image = ort.InferenceSession(str(tmp / graphs["image"]), providers=["CPUExecutionProvider"])
        text = ort.InferenceSession(str(tmp / graphs["text"]), providers=["CPUExecutionProvider"])
        tok = reference.tokenize(txt)
        image_emb, patches = image.run(None, {"pixels": pix})
        text_emb, states = text.run(None, tok)
        mask = text_mask(reference.config, tok["attention_mask"])
        states, mask = pad_text(states, mask, fusion_length(reference.config))
        return {
            "image": {"pixels": pix},
            "text": tok,
            "fusion": fusion_feeds(patches, states, mask, image_emb, text_emb),
        }

    # Timed at batch 32; accuracy on every sample (the parity set).
    timed = part_feeds(np.resize(pixels, (32, *pixels.shape[1:])), (texts * 32)[:32])
    every = part_feeds(pixels, texts)
    # a ViT backbone is MatMul-heavy like the text tower: dynamic int8, no CNN stem to calibrate
    vit = isinstance(reference.model.image, ViTImageTower)
    image_options = VIT_IMAGE_OPTIONS if vit else IMAGE_OPTIONS
    options = {"image": image_options, "text": TEXT_OPTIONS, "fusion": FUSION_OPTIONS}
    chosen, choice = dict(graphs), {}
    for part, fp32 in graphs.items():
        ref_out = _run_graph(tmp / fp32, every[part], repeats=0)[0]
        timings[f"{part}_fp32_ms"] = _run_graph(tmp / fp32, timed[part])[1]
        choice[part] = "fp32"
        for option in options[part]:
            q = f"{part}.int8.onnx"
            if part == "image" and not vit:
                quantize_image_static(tmp / fp32, tmp / q, calibration, option)
            else:
                quantize_matmul_dynamic(tmp / fp32, tmp / q, option)
            q_out = _run_graph(tmp / q, every[part], repeats=0)[0]
            ms = _run_graph(tmp / q, timed[part])[1]
            cosine = _min_cosine(ref_out, q_out)
            timings[f"{part}_{option}_int8_ms"], timings[f"{part}_{option}_cosine"] = ms, cosine
            if ms < timings[f"{part}_fp32_ms"] and cosine >= threshold:
                chosen[part], choice[part] = q, option
                break
            (tmp / q).unlink()
    return chosen, choice
