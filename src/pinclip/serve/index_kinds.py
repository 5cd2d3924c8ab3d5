"""The index-kind registry: the named faiss indexes `pinclip index build --kind` offers.

No faiss import here, so the CLI's help and `pinclip models`-style listings read the table
without the serve extra. A kind is a faiss `index_factory` string in which `{nlist}`, `{m}`
and `{nbits}` are filled from the catalog size (`pinclip.serve.index.factory_string`); any
other factory string is accepted too. Chosen by measurement at 10^6 (BENCHMARKS.md §3b):
`ivfsq8` (IVF + 8-bit scalar-quantized vectors, 256 B a vector = 26% of raw float32)
reaches recall@10 0.98 at ~540x exact search; `ivfpq` (IVF + PQ codes whose shortlist is
re-ranked on SQ8 vectors) trades a little memory for a smaller scan per probed list.

Adding a kind is one `INDEX_KINDS.add` here (docs/architecture.md); the CLI help and the
parametrised test in tests/serve/test_index.py pick it up.
"""

from __future__ import annotations

from dataclasses import dataclass

from pinclip.registry import Registry


@dataclass(frozen=True)
class IndexKind:
    """A registered index kind: its faiss `index_factory` template."""

    factory: str


INDEX_KINDS: Registry[IndexKind] = Registry("index kind")

INDEX_KINDS.add(
    "hnsw", IndexKind("HNSW32,Flat"), help="HNSW graph, the default (up to a few 10^6 pins)"
)
INDEX_KINDS.add(
    "ivfsq8",
    IndexKind("IVF{nlist},SQ8"),
    help="10^6+ pins: 26% of raw memory, recall@10 0.98",
)
INDEX_KINDS.add(
    "ivfpq",
    IndexKind("IVF{nlist},PQ{m}x{nbits},Refine(SQ8)"),
    help="PQ codes re-ranked on SQ8",
)
INDEX_KINDS.add("flat", IndexKind("Flat"), help="exact search (small catalogs)")

DEFAULT_KIND = "hnsw"
