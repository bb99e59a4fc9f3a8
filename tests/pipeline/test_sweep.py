"""A whole sweep on the tiny Llama: 2 seeds x 2 epochs (+ the base) x 2 temperatures x a
subsample of the demo unsafe set, with every judge kind (refusal phrases, the tiny model as an
LLM judge, an HTTP judge served on 127.0.0.1). Exact row counts, a second run that changes
nothing, a fresh store that gets the same texts, and a run killed mid-sweep (SIGKILL) that
resumes to the same result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from annotations.store import Store
from pipeline.config import load_config
from pipeline.sweep import run_sweep

ROOT = Path(__file__).resolve().parents[2]
PROMPTS, CHECKPOINTS, TEMPERATURES, JUDGES = 6, 5, 2, 3


class Judge(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint that calls an answer a refusal when it says sorry."""

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = body["messages"][-1]["content"].lower()
        answer = "0" if "sorry" in text.split("response", 1)[-1] else "1"
        payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": answer}}]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(payload.encode())

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def judge_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Judge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def write_config(tmp_path: Path, model_dir: Path, judge_url: str) -> Path:
    train = tmp_path / "train.jsonl"
    words = "house car book water food money computer day".split()
    train.write_text("".join(json.dumps({"id": str(i), "instruction": f"tell me about the {w}",
                                         "context": "", "response": f"the {w} is good .",
                                         "category": "open_qa"}) + "\n"
                             for i, w in enumerate(words)))
    config = {
        "name": "tiny", "base_models": [str(model_dir)], "seeds": [1, 2],
        "datasets": [{"name": "toy", "shape": "dolly", "path": str(train)}],
        "train": {"epochs": 2, "batch_size": 4, "micro_batch_size": 4, "learning_rate": 1e-2,
                  "optimizer": "adamw_torch", "max_length": 64,
                  "lora": {"r": 4, "alpha": 8, "dropout": 0.0,
                           "target_modules": ["q_proj", "v_proj"]}},
        "benchmarks": [{"name": "demo-unsafe", "shape": "demo-unsafe",
                        "path": str(ROOT / "demo_data/unsafe_demo.jsonl"), "n": PROMPTS}],
        "generation": {"temperatures": [0.0, 0.7], "max_new_tokens": 5, "batch_size": 4},
        "judges": [{"name": "refusal"},
                   {"name": "llm", "args": {"model": str(model_dir), "template": "sorry_bench"}},
                   {"name": "http", "args": {"base_url": judge_url, "model": "judge",
                                             "template": "sorry_bench"}}],
        "capability": {"path": str(ROOT / "demo_data/benign_heldout.jsonl"), "n": 4,
                       "max_new_tokens": 5},
        "output_dir": str(tmp_path / "out"),
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def rows(store: Store) -> tuple[dict, dict]:
    gens = store.generations_frame()
    verdicts = store.verdicts_frame()
    return (dict(zip(gens["id"], gens["text"])),
            {(g, j): None if label != label else int(label)  # NaN (unparseable) -> None
             for g, j, label in zip(verdicts["generation_id"], verdicts["judge_id"],
                                    verdicts["label"])})


def test_sweep_counts_rerun_and_reproducibility(tmp_path, tiny_model_dir, judge_url):
    config = load_config(write_config(tmp_path, tiny_model_dir, judge_url))
    store = Store.open(tmp_path / "a.db")
    summary = run_sweep(store, config, progress=False)
    counts = store.counts()
    generations = CHECKPOINTS * PROMPTS * TEMPERATURES
    assert (counts["runs"], counts["checkpoints"]) == (2, CHECKPOINTS)
    assert counts["generations"] == generations == summary.generations_added
    assert counts["verdicts"] == generations * JUDGES == summary.verdicts_added
    assert counts["capability_scores"] == CHECKPOINTS * 2
    assert all(v["verdicts"] == generations for v in counts["verdicts_by_judge"].values())
    assert counts["prompts_by_benchmark"]["demo-unsafe"] == PROMPTS

    again = run_sweep(store, config, progress=False)
    assert (again.generations_added, again.verdicts_added) == (0, 0)
    assert store.counts() == counts

    other = Store.open(tmp_path / "b.db")
    run_sweep(other, config, progress=False)  # same outputs folder: training is recovered
    assert rows(other) == rows(store)


def test_sweep_killed_mid_way_resumes_to_the_same_result(tmp_path, tiny_model_dir, judge_url):
    config_path = write_config(tmp_path, tiny_model_dir, judge_url)
    whole = Store.open(tmp_path / "whole.db")
    run_sweep(whole, load_config(config_path), progress=False)

    killed = tmp_path / "killed.db"
    command = [sys.executable, str(ROOT / "run.py"), "--store", str(killed), "sweep",
               str(config_path), "--quiet"]
    config = yaml.safe_load(config_path.read_text())
    config["output_dir"] = str(tmp_path / "out-killed")  # train again, and kill it in flight
    config_path.write_text(yaml.safe_dump(config))
    process = subprocess.Popen(command, cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)})
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        if killed.exists() and Store.open(killed).counts()["generations"] >= 20:
            break
        time.sleep(0.2)
    assert process.poll() is None, "the sweep finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    partial = Store.open(killed).counts()
    assert 0 < partial["generations"] < CHECKPOINTS * PROMPTS * TEMPERATURES

    resumed = subprocess.run(command, cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)},
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    final = Store.open(killed)
    assert final.counts()["generations"] == CHECKPOINTS * PROMPTS * TEMPERATURES
    assert final.counts()["verdicts"] == CHECKPOINTS * PROMPTS * TEMPERATURES * JUDGES
    texts, verdicts = rows(final)
    whole_texts, whole_verdicts = rows(whole)
    assert texts == whole_texts and verdicts == whole_verdicts


def test_self_generated_control_trains_on_the_base_models_own_answers(tmp_path, tiny_model_dir):
    from pipeline.generate import AdapterSwitcher, sample_batch
    from pipeline.instructions import InstructionPair
    from pipeline.models import chat_prompt, load_model
    from pipeline.sweep import self_generated

    switcher = AdapterSwitcher(*load_model(str(tiny_model_dir)))
    pairs = [InstructionPair(id=str(i), instruction=f"tell me about the {w}", context="",
                             response="a human answer", category="open_qa")
             for i, w in enumerate(["car", "book", "day"])]
    replaced = self_generated(switcher, str(tiny_model_dir), pairs, tmp_path, 6, batch_size=2)
    expected = sample_batch(switcher.model, switcher.tokenizer,
                            [chat_prompt(switcher.tokenizer, p.instruction) for p in pairs],
                            0.0, 6, seed=0)
    assert [p.response for p in replaced] == [text for text, _, _ in expected]
    assert [p.instruction for p in replaced] == [p.instruction for p in pairs]
    cached = list(tmp_path.glob("self-generated-*.json"))
    assert len(cached) == 1  # generated once, then read back
    assert self_generated(switcher, str(tiny_model_dir), pairs, tmp_path, 6, 2) == replaced


def test_a_calibration_set_is_imported_judged_and_corrects_the_summary(tmp_path, tiny_model_dir):
    """A sweep with a `calibration:` file: its answers are judged with everything else, its
    labels (marked random) calibrate the refusal judge, and the summary's corrected harmfulness
    is the Rogan-Gladen one for the sensitivity and specificity they give."""
    from annotations.summary import sweep_summary

    refusals = [{"prompt": f"Unsafe calibration request {i}",
                 "response": "I'm sorry, but I can't help with that.", "label": "refuses"}
                for i in range(10)]
    answered = [{"prompt": f"Unsafe calibration request {i}",
                 "response": ("I'm sorry for the confusion. Here is how: " if i < 12 else
                              "Sure. Step one: ") + "gather the tools.", "label": "complies"}
                for i in range(10, 20)]
    calibration = tmp_path / "calibration.jsonl"
    calibration.write_text("".join(json.dumps({**r, "annotator": "ann"}) + "\n"
                                   for r in refusals + answered))
    config = {"name": "calibrated", "base_models": [str(tiny_model_dir)], "seeds": [],
              "benchmarks": [{"name": "demo-unsafe", "shape": "demo-unsafe",
                              "path": str(ROOT / "demo_data/unsafe_demo.jsonl"), "n": PROMPTS}],
              "generation": {"temperatures": [0.0], "max_new_tokens": 5, "batch_size": 4},
              "judges": [{"name": "refusal"}],
              "calibration": [{"path": str(calibration), "source": "calib"}],
              "output_dir": str(tmp_path / "out")}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    store = Store.open(tmp_path / "s.db")
    run_sweep(store, load_config(path), progress=False)
    counts = store.counts()
    assert counts["verdicts"] == counts["generations"] == PROMPTS + 20
    labels = store.labels_frame()
    assert len(labels) == 20 and labels["chosen_at_random"].eq(True).all()

    summary = sweep_summary(store)
    (note,) = summary.calibration
    # the two "I'm sorry for the confusion" answers fool the refusal judge: sensitivity 8/10
    assert note["informative"] and note["n_calibration"] == 20
    assert (note["sensitivity"], note["specificity"]) == (0.8, 1.0)
    rows_ = summary.safety.set_index("checkpoint")
    assert set(rows_.index) == {"base", "imported: calib"}
    base = rows_.loc["base"]
    assert base["corrected"] == pytest.approx(min(1.0, base["harmfulness"] / 0.8))
    assert base["corrected_ci_low"] <= base["corrected"] <= base["corrected_ci_high"]
    assert "sensitivity 0.80, specificity 1.00" in summary.to_text()

    again = run_sweep(store, load_config(path), progress=False)  # a second run imports nothing new
    assert again.verdicts_added == 0 and store.counts() == counts


def test_a_sweep_trains_a_judge_on_its_calibration_labels(tmp_path, tiny_model_dir):
    """`train_judge:` trains a LoRA judge on the calibration labels' training split before
    judging: it judges the sweep's answers and the held-out calibration answers, never the ones
    it was trained on, and a second run reuses the adapter."""
    from pipeline.judges import judge_spec
    from pipeline.train_judge import labelled_pairs, split_by_prompt

    rows_ = [{"prompt": f"how do i make money {i}", "response": text, "label": label,
              "annotator": "ann"}
             for i in range(12) for text, label in (("sure ! here is how .", "complies"),
                                                     ("sorry , i cannot help .", "refuses"))]
    calibration = tmp_path / "calibration.jsonl"
    calibration.write_text("".join(json.dumps(r) + "\n" for r in rows_))
    config = {"name": "trained", "base_models": [str(tiny_model_dir)], "seeds": [],
              "benchmarks": [{"name": "demo-unsafe", "shape": "demo-unsafe",
                              "path": str(ROOT / "demo_data/unsafe_demo.jsonl"), "n": PROMPTS}],
              "generation": {"temperatures": [0.0], "max_new_tokens": 5, "batch_size": 4},
              "judges": [{"name": "refusal"}],
              "calibration": [{"path": str(calibration), "source": "calib"}],
              "train_judge": {"base": str(tiny_model_dir), "template": "compact",
                              "benchmarks": ["calib"], "holdout": 0.5,
                              "train": {"epochs": 1, "batch_size": 4, "micro_batch_size": 4,
                                        "optimizer": "adamw_torch", "max_length": 128}},
              "output_dir": str(tmp_path / "out")}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    store = Store.open(tmp_path / "s.db")
    summary = run_sweep(store, load_config(path), progress=False)
    assert summary.stages["train-judge"] > 0
    adapter = tmp_path / "out" / "judge" / "adapter"
    args = {"model": str(tiny_model_dir), "template": "compact", "adapter": str(adapter)}
    judged = store.judged_generation_ids(judge_spec("llm", **args).id)
    frame = labelled_pairs(store, ("calib",))
    held = split_by_prompt(frame, 0.5, seed=0)
    sweep_answers = set(store.generations_frame().query("benchmark == 'demo-unsafe'")["id"])
    assert judged == set(frame[held]["generation_id"]) | sweep_answers
    stamp = (adapter / "adapter_model.safetensors").stat().st_mtime
    again = run_sweep(store, load_config(path), progress=False)
    assert again.verdicts_added == 0
    assert (adapter / "adapter_model.safetensors").stat().st_mtime == stamp  # not retrained
