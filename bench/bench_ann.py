"""ANN search: faiss HNSW and IVF-PQ against exact search, hnswlib and usearch.

    python bench/bench_ann.py --sizes 100000,1000000

Vectors: 256-d, unit norm, clustered like model embeddings (a mixture of 1,000 Gaussian
clusters in a 64-d latent space, mapped to 256-d by a fixed random matrix, plus isotropic
noise), seed 0; queries are fresh draws from the same mixture. Ground truth is exact inner
product (faiss IndexFlatIP). For each index: build time (2 threads, one run), serialized size,
recall@10 over 1,000 queries and single-query QPS (one thread, one query per call) for a sweep
of efSearch / nprobe; then, at each index's operating point (the cheapest setting with
recall@10 >= 0.95), QPS is re-timed side by side with exact search, median of 5 interleaved
repeats, and reported as a ratio to exact.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import faiss
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from rich.console import Console

from _common import RESULTS, interleaved, markdown_table, write_result

DIM, K, TARGET = 256, 10, 0.95
console = Console()


def clustered_vectors(n: int, seed: int, centers: int = 1000, latent: int = 128) -> np.ndarray:
    """n unit vectors from a fixed clustered mixture (cluster layout fixed by seed 0)."""
    layout = np.random.default_rng(0)
    means = layout.standard_normal((centers, latent)).astype(np.float32)
    lift = layout.standard_normal((latent, DIM)).astype(np.float32) / np.sqrt(latent)
    rng = np.random.default_rng(seed)
    out = np.empty((n, DIM), np.float32)
    for i in range(0, n, 100_000):
        m = min(100_000, n - i)
        z = means[rng.integers(0, centers, m)] + 0.6 * rng.standard_normal((m, latent), np.float32)
        x = z @ lift + 0.1 * rng.standard_normal((m, DIM), np.float32)
        out[i : i + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)]))


class Faiss:
    def __init__(self, kind: str, base: np.ndarray, m: int, ef_construction: int) -> None:
        n = len(base)
        self.kind = kind
        if kind == "exact":
            self.index = faiss.IndexFlatIP(DIM)
        elif kind == "faiss_hnsw":
            self.index = faiss.IndexHNSWFlat(DIM, m, faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efConstruction = ef_construction
        elif kind.startswith("factory:"):  # any faiss index_factory string, e.g. IVF4096,SQ8
            spec, _, k_factor = kind.removeprefix("factory:").partition("@k")
            self.index = faiss.index_factory(DIM, spec, faiss.METRIC_INNER_PRODUCT)
            self.params = faiss.ParameterSpace()
            train = min(n, 160_000)
            self.index.train(base[np.random.default_rng(1).choice(n, train, replace=False)])
            if k_factor:  # re-ranking shortlist = k_factor * k
                faiss.downcast_index(self.index).k_factor = float(k_factor)
        else:  # IVF-PQ (32 bytes a vector) with exact re-ranking of its shortlist
            nlist = int(np.sqrt(n))
            self.ivf = faiss.IndexIVFPQ(
                faiss.IndexFlatIP(DIM), DIM, nlist, 32, 8, faiss.METRIC_INNER_PRODUCT
            )
            self.ivf.train(
                base[np.random.default_rng(1).choice(n, min(n, 40 * nlist), replace=False)]
            )
            self.index = faiss.IndexRefineFlat(self.ivf)
            self.index.k_factor = 4
        self.index.add(base)

    def set(self, param: int) -> None:
        if self.kind.startswith("factory:"):
            self.params.set_index_parameter(self.index, "nprobe", param)
        elif self.kind == "faiss_hnsw":
            self.index.hnsw.efSearch = param
        elif self.kind == "faiss_ivfpq":
            self.ivf.nprobe = param

    def search(self, q: np.ndarray) -> np.ndarray:
        return self.index.search(q, K)[1]

    def nbytes(self) -> int:
        return len(faiss.serialize_index(self.index))


class Hnswlib:
    def __init__(self, base: np.ndarray, m: int, ef_construction: int) -> None:
        import hnswlib

        self.index = hnswlib.Index(space="ip", dim=DIM)
        self.index.init_index(
            max_elements=len(base), M=m, ef_construction=ef_construction, random_seed=0
        )
        self.index.add_items(base, np.arange(len(base)), num_threads=2)

    def set(self, param: int) -> None:
        self.index.set_ef(param)

    def search(self, q: np.ndarray) -> np.ndarray:
        return self.index.knn_query(q, k=K, num_threads=1)[0]

    def nbytes(self) -> int:
        with tempfile.TemporaryDirectory() as tmp:
            self.index.save_index(f"{tmp}/i.bin")
            return os.path.getsize(f"{tmp}/i.bin")


class Usearch:
    def __init__(self, base: np.ndarray, m: int, ef_construction: int) -> None:
        from usearch.index import Index

        self.index = Index(
            ndim=DIM, metric="ip", dtype="f32", connectivity=m, expansion_add=ef_construction
        )
        self.index.add(np.arange(len(base)), base, threads=2)

    def set(self, param: int) -> None:
        self.index.expansion_search = param

    def search(self, q: np.ndarray) -> np.ndarray:
        return np.atleast_2d(self.index.search(q, K, threads=1).keys)

    def nbytes(self) -> int:
        return len(self.index.save())


SWEEP = {
    "faiss_hnsw": [16, 32, 64, 128, 256],
    "hnswlib": [16, 32, 64, 128, 256],
    "usearch": [16, 32, 64, 128, 256],
    "faiss_ivfpq": [4, 8, 16, 32, 64],
    "factory": [8, 16, 32, 64, 128],
}


def single_query_qps(index, queries: np.ndarray) -> tuple[np.ndarray, float]:
    """Results and queries/s, one query per call (the serving pattern)."""
    start = time.perf_counter()
    found = np.concatenate([index.search(queries[i : i + 1]) for i in range(len(queries))])
    return found, len(queries) / (time.perf_counter() - start)


def bench_size(n: int, libs: list[str], m: int, efc: int, n_queries: int) -> dict:
    console.print(f"[bold]N = {n:,}[/]: generating")
    base, queries = clustered_vectors(n, seed=1), clustered_vectors(n_queries, seed=2)
    faiss.omp_set_num_threads(2)
    exact = Faiss("exact", base, m, efc)
    truth = exact.search(queries)
    out: dict = {"n": n, "indexes": {}}
    built = {}
    for lib in libs:
        console.print(f"  building {lib}")
        faiss.omp_set_num_threads(2)
        start = time.perf_counter()
        index = (
            Hnswlib(base, m, efc)
            if lib == "hnswlib"
            else Usearch(base, m, efc)
            if lib == "usearch"
            else Faiss(lib, base, m, efc)
        )
        build = time.perf_counter() - start
        faiss.omp_set_num_threads(1)
        sweep = []
        for p in SWEEP[lib.split(":")[0]]:
            index.set(p)
            found, qps = single_query_qps(index, queries)
            sweep.append({"param": p, "recall@10": recall(found, truth), "qps": qps})
            console.print(f"    {p}: recall@10 {sweep[-1]['recall@10']:.3f}  {qps:,.0f} q/s")
        ok = [s for s in sweep if s["recall@10"] >= TARGET]
        point = ok[0] if ok else max(sweep, key=lambda s: s["recall@10"])
        index.set(point["param"])
        built[lib] = index
        out["indexes"][lib] = {
            "build_s": build,
            "bytes": index.nbytes(),
            "sweep": sweep,
            "operating_point": point,
        }
    faiss.omp_set_num_threads(1)
    few = queries[:50]  # exact is slow at 10^6; QPS is per query either way
    per_query = {"exact": (exact, few)} | {lib: (idx, queries[:500]) for lib, idx in built.items()}
    timed = interleaved(
        {k: (lambda i=i, q=q: single_query_qps(i, q)) for k, (i, q) in per_query.items()}
    )
    exact_qps = len(few) / timed["exact"]["median_s"]
    out["exact"] = {"qps": exact_qps, "bytes": exact.nbytes(), **timed["exact"]}
    for lib in built:
        qps = len(queries[:500]) / timed[lib]["median_s"]
        out["indexes"][lib]["operating_point"] |= {
            "qps_side_by_side": qps,
            "speedup_over_exact": qps / exact_qps,
        }
    return out


def plot(results: list[dict], path: Path) -> None:
    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.5), squeeze=False)
    for ax, res in zip(axes[0], results, strict=True):
        for lib, r in res["indexes"].items():
            ax.plot(
                [s["recall@10"] for s in r["sweep"]],
                [s["qps"] for s in r["sweep"]],
                "o-",
                label=lib,
            )
        ax.axhline(res["exact"]["qps"], color="k", ls="--", label="exact (IndexFlatIP)")
        ax.axhline(100 * res["exact"]["qps"], color="gray", ls=":", label="100× exact")
        ax.axvline(TARGET, color="r", ls=":", lw=1)
        ax.set(
            xscale="linear",
            yscale="log",
            xlabel="recall@10",
            ylabel="single-query QPS (1 thread)",
            title=f"N = {res['n']:,}, 256-d",
        )
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--libs", default="faiss_hnsw,faiss_ivfpq,hnswlib,usearch")
    ap.add_argument(
        "--factories",
        default="",
        help="';'-separated faiss index_factory strings to add (nprobe swept), each optionally "
        "with '@kN' for a re-ranking shortlist of N*k, e.g. 'IVF4096,SQ8;IVF4096,PQ32,Refine(SQ8)@k16'",
    )
    ap.add_argument("--m", type=int, default=16, help="HNSW graph degree (all three HNSWs)")
    ap.add_argument("--ef-construction", type=int, default=80)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--name", default="ann", help="results name: bench/results/NAME.{json,md,png}")
    args = ap.parse_args()
    libs = [lib for lib in args.libs.split(",") if lib]
    libs += [f"factory:{f}" for f in args.factories.split(";") if f]
    results = [
        bench_size(int(n), libs, args.m, args.ef_construction, args.queries)
        for n in args.sizes.split(",")
    ]
    rows = []
    for res in results:
        rows.append(
            [
                f"{res['n']:,}",
                "exact (faiss FlatIP)",
                "-",
                1.0,
                res["exact"]["qps"],
                1.0,
                "-",
                res["exact"]["bytes"] / 2**20,
            ]
        )
        for lib, r in res["indexes"].items():
            p = r["operating_point"]
            rows.append(
                [
                    f"{res['n']:,}",
                    lib,
                    p["param"],
                    p["recall@10"],
                    p["qps_side_by_side"],
                    p["speedup_over_exact"],
                    r["build_s"],
                    r["bytes"] / 2**20,
                ]
            )
    table = markdown_table(
        [
            "N",
            "index",
            "efSearch/nprobe",
            "recall@10",
            "QPS (1 thread)",
            "× exact",
            "build s (2 threads)",
            "size MiB",
        ],
        rows,
    )
    console.print(table)
    plot(results, RESULTS / f"{args.name}_recall_qps.png")
    write_result(
        args.name, {"m": args.m, "ef_construction": args.ef_construction, "results": results}, table
    )


if __name__ == "__main__":
    main()
