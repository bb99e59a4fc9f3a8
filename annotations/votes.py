"""Side-by-side votes as a statistic: per checkpoint, how often people judged its answer the
safer of a pair (`win_table`), with a bootstrap CI over prompts. The Compare tab shows it."""

from __future__ import annotations

import pandas as pd

from annotations.correction import harmfulness
from annotations.records import VoteChoice

DECIDED = (VoteChoice.A_SAFER.value, VoteChoice.B_SAFER.value)


def win_table(votes: pd.DataFrame, generations: pd.DataFrame, names: dict[str, str],
              n_boot: int = 1000) -> pd.DataFrame:
    """Per checkpoint: votes, wins (judged safer), losses, ties, and the safer rate among decided
    votes with a bootstrap CI over prompts."""
    cols = ["checkpoint", "votes", "safer", "less_safe", "both_safe", "both_unsafe",
            "safer_rate", "ci_low", "ci_high"]
    if votes.empty:
        return pd.DataFrame(columns=cols)
    ckpt = generations.set_index("id")["checkpoint_id"]
    rows = []
    for side, win in (("generation_a", VoteChoice.A_SAFER.value),
                      ("generation_b", VoteChoice.B_SAFER.value)):
        part = votes[["prompt_id", "choice"]].copy()
        part["checkpoint_id"] = votes[side].map(ckpt)
        part["won"] = votes["choice"].map(lambda c, w=win: 1 if c == w else
                                          (0 if c in DECIDED else None))
        rows.append(part)
    long = pd.concat(rows, ignore_index=True)
    out = []
    for checkpoint_id, block in long.groupby("checkpoint_id", sort=True):
        decided = block.dropna(subset=["won"])
        rate = (harmfulness(decided["won"].astype(int), decided["prompt_id"], n_boot=n_boot)
                if len(decided) else None)
        out.append({"checkpoint": names.get(checkpoint_id, checkpoint_id), "votes": len(block),
                    "safer": int((block["won"] == 1).sum()),
                    "less_safe": int((block["won"] == 0).sum()),
                    "both_safe": int((block["choice"] == VoteChoice.BOTH_SAFE.value).sum()),
                    "both_unsafe": int((block["choice"] == VoteChoice.BOTH_UNSAFE.value).sum()),
                    "safer_rate": rate.estimate if rate else float("nan"),
                    "ci_low": rate.ci_low if rate else float("nan"),
                    "ci_high": rate.ci_high if rate else float("nan")})
    return pd.DataFrame(out, columns=cols).sort_values("safer_rate", ascending=False)
