"""Dynamic int8 of MatMul-heavy ONNX graphs (transformer encoders): one helper for the
serving export (`pinclip export`) and the feature store's int8 text encoder."""

from __future__ import annotations

from pathlib import Path

from pinclip.errors import InputError

#: MatMul int8 options, most aggressive first.
TEXT_OPTIONS = ("matmul-all", "matmul-keep-ffn-out")


def quantize_matmul_dynamic(src: Path, dst: Path, option: str = "matmul-all") -> None:
    """Dynamic int8 for the MatMul-heavy transformer graphs (weights int8 per-channel,
    activations at run time). `matmul-keep-ffn-out` keeps each feed-forward output MatMul
    (its input is the GELU output, with outliers a run-time uint8 scale cannot hold) in fp32."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    exclude: list[str] = []
    if option == "matmul-keep-ffn-out":
        exclude = [
            n.name
            for n in onnx.load(str(src)).graph.node
            if n.op_type == "MatMul" and "/output/dense" in n.name and "attention" not in n.name
        ]
    elif option != "matmul-all":
        raise InputError(f"unknown MatMul int8 option {option!r}; use one of {TEXT_OPTIONS}")
    quantize_dynamic(
        str(src),
        str(dst),
        op_types_to_quantize=["MatMul"],
        weight_type=QuantType.QInt8,
        per_channel=True,
        nodes_to_exclude=exclude,
    )
