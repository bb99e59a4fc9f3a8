"""Benchmark loaders: one small module per file shape, each `load(path_or_id, name, columns)`
returning typed Prompts. `load_benchmark("harmbench", "harmbench_behaviors_text_all.csv")`.

Shapes: sorry-bench, harmbench, advbench, do-not-answer, plain (any CSV/JSONL with a prompt
column), and the project's own demo sets (demo-unsafe, demo-sensitive, demo-capability).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from typing import Any

from annotations.records import Prompt
from annotations.store import Store
from pipeline.benchmarks import advbench, demo, do_not_answer, harmbench, plain, sorry_bench
from pipeline.benchmarks.demo import demo_prompts

Loader = Callable[..., list[Prompt]]

BENCHMARK_LOADERS: dict[str, Loader] = {
    "sorry-bench": sorry_bench.load,
    "harmbench": harmbench.load,
    "advbench": advbench.load,
    "do-not-answer": do_not_answer.load,
    "plain": plain.load,
    "demo-unsafe": demo.load_unsafe,
    "demo-sensitive": demo.load_sensitive,
    "demo-capability": demo.load_capability,
}

__all__ = ["BENCHMARK_LOADERS", "demo_prompts", "import_prompts", "load_benchmark"]


def load_benchmark(shape: str, path: str | Path, name: str | None = None,
                   columns: str | Mapping[str, str] | None = None) -> list[Prompt]:
    """Prompts from a benchmark file (or hub id) of a known shape; `name` overrides the
    benchmark name stored with each prompt, `columns` renames columns (`prompt=question`)."""
    key = shape.strip().lower().replace("_", "-")
    if key not in BENCHMARK_LOADERS:
        raise ValueError(f"unknown benchmark shape {shape!r} "
                         f"(known: {', '.join(BENCHMARK_LOADERS)})")
    return BENCHMARK_LOADERS[key](path, name=name, columns=columns)


def import_prompts(store: Store, shape: str, path: str | Path, name: str | None = None,
                   columns: str | Mapping[str, str] | None = None) -> dict[str, Any]:
    """A benchmark's prompts (see pipeline.benchmarks for the shapes), upserted in one go."""
    prompts = load_benchmark(shape, path, name=name, columns=columns)
    ids = [p.id for p in prompts]
    before = store.existing_ids("prompts", ids)
    with store.batch() as tx:
        tx.upsert_prompts(prompts)
    return {"benchmarks": sorted({p.benchmark for p in prompts}), "prompts": len(prompts),
            "added": len(set(ids) - before)}
