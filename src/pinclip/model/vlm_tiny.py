"""Tiny random vision-language models written in transformers' own format, built offline.

No VLM's weights can be downloaded here (tests, demo, benchmarks), so the `hf-vlm:` path is
exercised with tiny randomly initialised models of real families, saved with
`save_pretrained` together with a processor (image processor, a byte-level BPE tokenizer
trained on the fly, a chat template in the family's own style) and loaded back by path
exactly as a user's `hf-vlm:DIR` is. A build takes well under a second after imports.

    build_tiny_vlm("qwen2_vl", "/tmp/tiny-qwen2-vl")   # backbone: hf-vlm:/tmp/tiny-qwen2-vl
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

#: Words the tiny tokenizers are trained on (any text still encodes: byte-level BPE).
_CORPUS = [
    "a pin about red shoes and a blue hat on a board of summer outfits",
    "smiling cat face grinning dog emoji flags food animals travel places",
    "the quick brown fox jumps over the lazy dog describe this image text pin",
]

# The families' own template shapes, shortened (the real ones ship in each repo's processor).
_CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif c['type'] == 'text' %}{{ c['text'] }}"
    "{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_IDEFICS = (
    "{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}"
    "{% elif c['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def _tokenizer(specials: list[str], **roles: str):
    """A byte-level BPE tokenizer (a few hundred tokens) with the family's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **roles)


_LM = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)


def _qwen2_vl(out: Path, image_size: int, lm: dict) -> None:
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>"]
    specials += ["<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    tok = _tokenizer(specials, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    ids = dict(zip(specials, tok.convert_tokens_to_ids(specials), strict=True))
    config = Qwen2VLConfig(
        text_config=dict(
            **lm,
            vocab_size=len(tok),
            num_key_value_heads=2,
            max_position_embeddings=1024,
            rope_scaling={"type": "mrope", "mrope_section": [1, 1, 2]},
            bos_token_id=None,
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
        ),
        vision_config=dict(  # hidden_size: what the merger projects to, the decoder's width
            depth=2,
            embed_dim=32,
            hidden_size=lm["hidden_size"],
            num_heads=4,
            mlp_ratio=2,
            patch_size=14,
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    Qwen2VLForConditionalGeneration(config).save_pretrained(out)
    pixels = image_size * image_size
    Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=28 * 28, max_pixels=pixels),
        tokenizer=tok,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=_CHATML,
    ).save_pretrained(out)


def _idefics3(out: Path, image_size: int, lm: dict) -> None:
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessor,
        Idefics3Processor,
    )

    specials = ["<|endoftext|>", "<s>", "<fake_token_around_image>", "<image>"]
    specials += ["<end_of_utterance>", "<global-img>"]
    specials += [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)]
    tok = _tokenizer(
        specials, bos_token="<s>", eos_token="<end_of_utterance>", pad_token="<|endoftext|>"
    )
    ids = dict(zip(specials, tok.convert_tokens_to_ids(specials), strict=True))
    side, patch = 64, 16  # the vision encoder's input side; 16 patches -> 4 image tokens
    config = Idefics3Config(
        text_config=dict(
            **lm,
            model_type="llama",
            vocab_size=len(tok),
            num_key_value_heads=2,
            max_position_embeddings=1024,
            bos_token_id=ids["<s>"],
            eos_token_id=ids["<end_of_utterance>"],
            pad_token_id=ids["<|endoftext|>"],
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=side,
            patch_size=patch,
        ),
        scale_factor=2,
        image_token_id=ids["<image>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    Idefics3ForConditionalGeneration(config).save_pretrained(out)
    Idefics3Processor(
        image_processor=Idefics3ImageProcessor(
            size={"longest_edge": side},
            max_image_size={"longest_edge": side},
            do_image_splitting=False,
        ),
        tokenizer=tok,
        image_seq_len=(side // patch) ** 2 // 4,
        chat_template=_IDEFICS,
    ).save_pretrained(out)


#: family -> builder; the families the `hf-vlm:` tests run (SmolVLM v1 repos are Idefics3).
TINY_VLMS: dict[str, Callable[[Path, int, dict], None]] = {
    "qwen2_vl": _qwen2_vl,
    "idefics3": _idefics3,
}


def build_tiny_vlm(
    family: str, out: str | Path, *, image_size: int = 64, seed: int = 0, **lm: int
) -> Path:
    """Write a tiny random `family` VLM and its processor to `out` (a `hf-vlm:` folder);
    `lm` overrides the decoder's sizes (hidden_size, intermediate_size, num_hidden_layers)."""
    if family not in TINY_VLMS:
        raise ValueError(f"unknown tiny VLM family {family!r}; known: {sorted(TINY_VLMS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # heads of size 8 whatever the width: Qwen2-VL's mrope sections [1, 1, 2] cover half a head
    lm = {**_LM, "num_attention_heads": lm.get("hidden_size", _LM["hidden_size"]) // 8, **lm}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        TINY_VLMS[family](out, image_size, lm)
    return out
