"""The store's tables as they are now, after every migration (`annotations.migrations` holds how
they got here). `annotations.store` reads and writes through these definitions; nothing else
writes SQL.

What the columns hold beyond their names:
- checkpoints.kind: base (the base model itself, epoch 0), finetuned (an epoch of a run) or
  imported (answers imported with labels: no base model, run or epoch; `source` names the set).
- generations.seed: the sampling seed, NULL for imported answers; generations.response_hash: the
  hash of an imported answer's text (what tells two imported answers apart), NULL otherwise.
- verdicts.label: 1 complies, 0 refuses, NULL unparseable (records.VerdictLabel);
  verdicts.score: a score in [0, 1] (a rubric's), NULL when the judge gives none or its output
  lacked a field; verdicts.details: what else the judge said (category codes, named answers,
  rubric fields), a JSON object.
- scores: per-answer measures that are not verdicts (toxicity), one per answer and scorer
  (`scorers`, like `judges`: a registered name and its arguments); value NULL = could not score.
- checkpoints.step: the optimizer step of a checkpoint saved mid-epoch (a run with a capability
  goal), NULL at an epoch's end; checkpoints.examples_seen: training examples seen by then.
- run_goals: a run's capability goal (metric, benchmark, target), whether it was reached, and
  the checkpoint, step and examples seen where it was (records.RunGoal).
- labels.inclusion_probability: the probability with which the planner's random draw included
  this item in the session, in (0, 1]; NULL when unknown or the item was not drawn at random.
- jobs: the jobs of sweeps run as jobs (pipeline/jobs.py; records.JobRecord): kind, name, the
  ids of the jobs each waits for (`needs`, JSON), state (records.JobState), the last line of a
  failed job's error, how many times a worker started it, the worker's host and process id.
"""

from __future__ import annotations

from sqlalchemy import (JSON, Boolean, Column, DateTime, Float, ForeignKey, Integer, MetaData,
                        String, Table, Text)

metadata = MetaData()

meta = Table("meta", metadata, Column("key", String, primary_key=True), Column("value", String))
prompts = Table(
    "prompts", metadata,
    Column("id", String, primary_key=True), Column("benchmark", String, index=True),
    Column("kind", String, index=True), Column("category_id", String), Column("category", String),
    Column("source_id", String), Column("text", Text), Column("reference", Text),
    Column("style", String))
runs = Table(
    "runs", metadata,
    Column("id", String, primary_key=True), Column("base_model", String),
    Column("dataset", String), Column("seed", Integer), Column("hyperparameters", JSON),
    Column("versions", JSON), Column("created_at", DateTime(timezone=True)))
checkpoints = Table(
    "checkpoints", metadata,
    Column("id", String, primary_key=True),
    Column("run_id", String, ForeignKey("runs.id"), nullable=True, index=True),
    Column("base_model", String), Column("epoch", Integer), Column("adapter_path", String),
    Column("train_loss", Float), Column("kind", String), Column("source", String),
    Column("step", Integer), Column("examples_seen", Integer))
generations = Table(
    "generations", metadata,
    Column("id", String, primary_key=True),
    Column("checkpoint_id", String, ForeignKey("checkpoints.id"), index=True),
    Column("prompt_id", String, ForeignKey("prompts.id"), index=True),
    Column("temperature", Float), Column("sample_index", Integer), Column("seed", Integer),
    Column("max_new_tokens", Integer), Column("text", Text), Column("token_count", Integer),
    Column("finish_reason", String), Column("repetition", Float), Column("degenerate", Boolean),
    Column("empty", Boolean), Column("created_at", DateTime(timezone=True)),
    Column("response_hash", String))
judges = Table(
    "judges", metadata,
    Column("id", String, primary_key=True), Column("name", String), Column("args", JSON))
verdicts = Table(
    "verdicts", metadata,
    Column("id", String, primary_key=True),
    Column("generation_id", String, ForeignKey("generations.id"), index=True),
    Column("judge_id", String, ForeignKey("judges.id"), index=True),
    Column("label", Integer, nullable=True), Column("probability", Float), Column("raw", Text),
    Column("created_at", DateTime(timezone=True)), Column("score", Float), Column("details", JSON))
annotators = Table(
    "annotators", metadata,
    Column("name", String, primary_key=True), Column("role", String),
    Column("password_hash", String), Column("created_at", DateTime(timezone=True)))
labels = Table(
    "labels", metadata,
    Column("id", String, primary_key=True),
    Column("generation_id", String, ForeignKey("generations.id"), index=True),
    Column("annotator", String, ForeignKey("annotators.name"), index=True),
    Column("label", String), Column("note", Text), Column("chosen_at_random", Boolean),
    Column("created_at", DateTime(timezone=True)), Column("inclusion_probability", Float))
votes = Table(
    "votes", metadata,
    Column("id", String, primary_key=True),
    Column("prompt_id", String, ForeignKey("prompts.id")),
    Column("generation_a", String, ForeignKey("generations.id")),
    Column("generation_b", String, ForeignKey("generations.id")),
    Column("annotator", String, ForeignKey("annotators.name")), Column("choice", String),
    Column("created_at", DateTime(timezone=True)))
capability = Table(
    "capability", metadata,
    Column("id", String, primary_key=True),
    Column("checkpoint_id", String, ForeignKey("checkpoints.id"), index=True),
    Column("metric", String), Column("benchmark", String), Column("value", Float),
    Column("n", Integer))
run_goals = Table(
    "run_goals", metadata,
    Column("run_id", String, ForeignKey("runs.id"), primary_key=True),
    Column("metric", String), Column("benchmark", String), Column("target", Float),
    Column("status", String), Column("checkpoint_id", String), Column("step", Integer),
    Column("examples_seen", Integer), Column("value", Float))
scorers = Table(
    "scorers", metadata,
    Column("id", String, primary_key=True), Column("name", String), Column("args", JSON))
scores = Table(
    "scores", metadata,
    Column("id", String, primary_key=True),
    Column("generation_id", String, ForeignKey("generations.id"), index=True),
    Column("scorer_id", String, ForeignKey("scorers.id"), index=True),
    Column("value", Float, nullable=True), Column("raw", Text),
    Column("created_at", DateTime(timezone=True)))
judge_cache = Table(
    "judge_cache", metadata,
    Column("key", String, primary_key=True), Column("judge_id", String), Column("raw", Text),
    Column("created_at", DateTime(timezone=True)))
jobs = Table(
    "jobs", metadata,
    Column("id", String, primary_key=True), Column("sweep", String, index=True),
    Column("kind", String), Column("name", String), Column("position", Integer),
    Column("needs", JSON), Column("state", String), Column("error", Text),
    Column("attempts", Integer), Column("host", String), Column("pid", Integer),
    Column("submitted_at", DateTime(timezone=True)), Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)))
