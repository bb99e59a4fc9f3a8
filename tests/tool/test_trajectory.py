"""Trajectory: one prompt's answers across epochs, with verdicts and human labels."""

from __future__ import annotations

from annotations.records import HumanLabel, Label
from tool.trajectory import trajectory


def test_trajectory_of_one_prompt(filled):
    store = filled.store
    prompt = filled.prompts[1]
    gens = [g for g in filled.generations if g.prompt_id == prompt.id and g.temperature == 0.7]
    store.add_labels([Label(generation_id=gens[0].id, annotator="ana", label=HumanLabel.REFUSES),
                      Label(generation_id=gens[0].id, annotator="bob", label=HumanLabel.REFUSES)])
    result = trajectory(store, prompt.id, seed=1, temperature=0.7)
    assert list(result.chosen["checkpoint"]) == ["base", "seed 1 epoch 1", "seed 1 epoch 2"]
    assert list(result.others["checkpoint"]) == ["seed 2 epoch 1", "seed 2 epoch 2"]
    judge_cols = [c for c in result.chosen.columns if c.startswith("judge: ")]
    assert sorted(judge_cols) == ["judge: llm", "judge: refusal"]
    assert result.chosen.loc[0, "human labels"] == "refuses 2"
    assert result.chosen.loc[1, "human labels"] == "none"
    assert result.chosen.loc[0, "judge: refusal"] in ("complies", "refuses")
    plot = result.plot
    assert set(plot["seed"]) == {"seed 1", "seed 2"}
    assert sorted(plot[plot["seed"] == "seed 1"]["epoch"]) == [0, 1, 2]
    assert plot["complies_share"].between(0, 1).all()
