"""LoRA fine-tuning on the tiny Llama through trl: a checkpoint per epoch in the store, the loss
moves, only adapter weights change, resume skips finished work, adapters swap on one base."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from annotations.records import Checkpoint, Run
from annotations.store import Store
from pipeline.finetune import LoraSettings, TrainSettings, finetune
from pipeline.generate import AdapterSwitcher, sample_batch
from pipeline.models import chat_prompt, load_model


@dataclass(frozen=True)
class Pair:
    id: str
    instruction: str
    context: str
    response: str
    category: str = "open_qa"


PAIRS = [Pair(str(i), f"tell me about the {w}", "", f"the {w} is good . one two three four")
         for i, w in enumerate("house car book water food money computer day".split())]
SETTINGS = TrainSettings(epochs=2, batch_size=4, micro_batch_size=2, learning_rate=5e-2,
                         optimizer="adamw_torch", max_length=64,
                         lora=LoraSettings(r=4, alpha=8, dropout=0.0,
                                           target_modules=("q_proj", "v_proj")))


def _train(tmp_path: Path, model_dir: Path, seed: int = 1):
    store = Store.open(tmp_path / "s.db")
    run = Run(base_model=str(model_dir), dataset="toy", seed=seed,
              hyperparameters=SETTINGS.hyperparameters())
    return store, run, finetune(store, run, PAIRS, SETTINGS, tmp_path / "out", progress=False)


def test_one_checkpoint_per_epoch_with_settings_beside_it(tmp_path, tiny_model_dir):
    store, run, checkpoints = _train(tmp_path, tiny_model_dir)
    assert [c.epoch for c in checkpoints] == [1, 2]
    assert checkpoints[1].train_loss < checkpoints[0].train_loss  # the loss moved down
    saved = json.loads((Path(checkpoints[0].adapter_path) / "run.json").read_text())
    assert saved["run_id"] == run.id and saved["hyperparameters"]["learning_rate"] == 5e-2
    assert store.counts()["runs"] == 1 and store.counts()["checkpoints"] == 2


def test_only_adapter_weights_change(tmp_path, tiny_model_dir):
    before = load_file(tiny_model_dir / "model.safetensors")
    _, _, checkpoints = _train(tmp_path, tiny_model_dir)
    after = load_file(tiny_model_dir / "model.safetensors")
    assert all(torch.equal(before[k], after[k]) for k in before)
    adapter = load_file(Path(checkpoints[-1].adapter_path) / "adapter_model.safetensors")
    assert adapter and all("lora" in k for k in adapter)
    assert any(v.abs().sum() > 0 for k, v in adapter.items() if "lora_B" in k)  # B starts at 0


def test_finished_run_is_not_trained_again(tmp_path, tiny_model_dir):
    store, run, first = _train(tmp_path, tiny_model_dir)
    mtime = Path(first[-1].adapter_path, "adapter_model.safetensors").stat().st_mtime
    again = finetune(store, run, PAIRS, SETTINGS, tmp_path / "out", progress=False)
    assert again == first
    assert Path(first[-1].adapter_path, "adapter_model.safetensors").stat().st_mtime == mtime


def test_adapters_swap_on_one_base_model(tmp_path, tiny_model_dir):
    _, run, checkpoints = _train(tmp_path, tiny_model_dir)
    switcher = AdapterSwitcher(*load_model(str(tiny_model_dir)))
    text = [chat_prompt(switcher.tokenizer, "tell me about the house")]
    base = Checkpoint(base_model=str(tiny_model_dir))

    def answer(checkpoint):
        with switcher.use(checkpoint) as model:
            return sample_batch(model, switcher.tokenizer, text, 0.0, 8, seed=0)[0][0]

    plain = answer(base)
    tuned = answer(checkpoints[-1])
    assert tuned != plain
    assert answer(checkpoints[0]) != tuned
    assert answer(base) == plain  # adapters disabled again for epoch 0


def test_a_new_store_over_the_same_outputs_recovers_the_epochs(tmp_path, tiny_model_dir):
    _, run, first = _train(tmp_path, tiny_model_dir)
    fresh = Store.open(tmp_path / "fresh.db")
    again = finetune(fresh, run, PAIRS, SETTINGS, tmp_path / "out", progress=False)
    assert [(c.epoch, c.adapter_path) for c in again] == [(c.epoch, c.adapter_path) for c in first]
    assert again[0].train_loss == first[0].train_loss


def test_padding_free_packing_trains(tmp_path, tiny_model_dir):
    from dataclasses import replace

    store = Store.open(tmp_path / "s.db")
    packed = replace(SETTINGS, packing=True, epochs=1)
    run = Run(base_model=str(tiny_model_dir), dataset="toy", seed=1,
              hyperparameters=packed.hyperparameters())
    checkpoints = finetune(store, run, PAIRS, packed, tmp_path / "out", progress=False)
    assert [c.epoch for c in checkpoints] == [1] and checkpoints[0].train_loss > 0


def test_4bit_qlora_path_trains_on_cpu(tmp_path, tiny_model_dir):
    """bitsandbytes' NF4 runs on CPU too (slowly), so the QLoRA path is exercised without a GPU."""
    from dataclasses import replace

    import pytest

    pytest.importorskip("bitsandbytes")
    store = Store.open(tmp_path / "s.db")
    qlora = replace(SETTINGS, quantization="4bit", epochs=1)
    run = Run(base_model=str(tiny_model_dir), dataset="toy", seed=1,
              hyperparameters=qlora.hyperparameters())
    checkpoints = finetune(store, run, PAIRS, qlora, tmp_path / "out", progress=False)
    assert [c.epoch for c in checkpoints] == [1] and checkpoints[0].train_loss > 0
    adapter = load_file(Path(checkpoints[0].adapter_path) / "adapter_model.safetensors")
    assert any(v.abs().sum() > 0 for k, v in adapter.items() if "lora_B" in k)


def test_the_lean_loss_is_trls_loss(tmp_path, tiny_model_dir):
    """The trainer's loss is the model's own head's: equal to trl's chunked head's (which also
    computes entropy and accuracy for its logs) on the same batches, padded and packed."""
    from dataclasses import replace

    from trl import SFTTrainer

    from pipeline.finetune import build_trainer

    for settings in (SETTINGS, replace(SETTINGS, packing=True)):
        trainer = build_trainer(str(tiny_model_dir), 1, PAIRS, settings, tmp_path / "t", False)
        for batch in trainer.get_train_dataloader():
            items = int((batch["labels"][:, 1:] != -100).sum())
            ours = trainer.compute_loss(trainer.model, dict(batch), num_items_in_batch=items)
            trls = SFTTrainer.compute_loss(trainer, trainer.model, dict(batch),
                                           num_items_in_batch=items)
            assert abs(float(ours) - float(trls)) < 1e-5 * max(1.0, abs(float(trls)))


def test_bf16_on_a_cpu_that_emulates_it_trains_in_float32(tmp_path, tiny_model_dir, monkeypatch,
                                                          caplog):
    """`bf16: true` autocasts on a CPU with AVX512-BF16 or AMX; on one without (emulated, far
    slower) the trainer runs float32 and says so, so one config serves both kinds of CPU."""
    from dataclasses import replace

    import pipeline.finetune as finetune_module
    from pipeline.finetune import build_trainer

    settings = replace(SETTINGS, bf16=True)
    for native, autocast in ((True, True), (False, False)):
        monkeypatch.setattr(finetune_module, "cpu_has_bf16", lambda native=native: native)
        finetune_module._warn_once.cache_clear()
        caplog.clear()
        trainer = build_trainer(str(tiny_model_dir), 1, PAIRS, settings, tmp_path / "t", False)
        assert trainer.args.bf16 is autocast
        said = [r.getMessage() for r in caplog.records if r.name == "pipeline.finetune"]
        assert any("training in float32" in m for m in said) is not native
    # unset, a CPU trains in float32 whatever it has; false is false
    for setting in (None, False):
        trainer = build_trainer(str(tiny_model_dir), 1, PAIRS, replace(SETTINGS, bf16=setting),
                                tmp_path / "t", False)
        assert trainer.args.bf16 is False
