"""The project's own demo prompts (no network, nothing gated), in three sets:

- `demo_data/unsafe_demo.jsonl`: unsafe requests in SORRY-Bench's shape over its 44 categories
  (benchmark "demo-unsafe");
- `demo_data/sensitive_benign.jsonl`: {"id", "prompt", "topic"}, harmless requests that merely
  sound sensitive (kind benign, benchmark "demo-sensitive");
- `demo_data/benign_heldout.jsonl`: Dolly-shaped held-out instructions whose answers are the
  reference (kind capability, benchmark "demo-capability").
"""

from __future__ import annotations

from pathlib import Path

from annotations.records import Prompt, PromptKind
from pipeline.benchmarks import plain, sorry_bench
from pipeline.benchmarks.common import Columns
from pipeline.instructions import load_instructions

DEMO_DIR = Path(__file__).resolve().parents[2] / "demo_data"
FILES = {"demo-unsafe": "unsafe_demo.jsonl", "demo-sensitive": "sensitive_benign.jsonl",
         "demo-capability": "benign_heldout.jsonl"}


def load_unsafe(path_or_id: str | Path, name: str | None = None,
                columns: Columns = None) -> list[Prompt]:
    return sorry_bench.load(path_or_id, name or "demo-unsafe", columns)


def load_sensitive(path_or_id: str | Path, name: str | None = None,
                   columns: Columns = None) -> list[Prompt]:
    return plain.load(path_or_id, name or "demo-sensitive", columns or "category=topic",
                      kind=PromptKind.BENIGN)


def load_capability(path_or_id: str | Path, name: str | None = None,
                    columns: Columns = None) -> list[Prompt]:
    pairs = load_instructions("dolly", path_or_id, columns=columns)
    return [Prompt(benchmark=name or "demo-capability", kind=PromptKind.CAPABILITY,
                   text=pair.user_text, reference=pair.response, category=pair.category,
                   category_id=pair.category, source_id=pair.id) for pair in pairs]


def demo_prompts(folder: str | Path = DEMO_DIR) -> list[Prompt]:
    """All three demo sets: unsafe, then sensitive-but-benign, then capability."""
    folder = Path(folder)
    return (load_unsafe(folder / FILES["demo-unsafe"])
            + load_sensitive(folder / FILES["demo-sensitive"])
            + load_capability(folder / FILES["demo-capability"]))
