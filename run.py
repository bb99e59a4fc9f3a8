"""The workbench's command line. Each command parses its arguments, calls one library function
and prints the result (as JSON with --json).

    python run.py --help
    python run.py demo                 # the demo sweep on the embedded model, then the app
    python run.py status --json        # --store, --json, --quiet, -v: before or after the command

Bad input (a malformed config or file, a missing file, an unknown name, a store that cannot be
opened, a missing optional package, a hub id offline) exits with code 2 and one line on stderr,
`error: ...`, with nothing stored changed; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

COMMANDS: dict[str, Callable[[argparse.Namespace], Any]] = {}
AddCommand = Callable[[str, str], argparse.ArgumentParser]  # a command's name, help
OWN_PACKAGES = {"annotations", "pipeline", "tool", "benchmarks"}
EXTRAS = {"psycopg": "postgres",  # module: the extra that brings it (none brings psycopg2)
          "submitit": "slurm", "ray": "ray"}
FILE_ARGS = ("config", "path", "labels", "judged", "calibration", "outcomes", "gold", "html",
             "plot")


def command(fn: Callable[[argparse.Namespace], Any]) -> Callable[[argparse.Namespace], Any]:
    COMMANDS[fn.__name__.removeprefix("cmd_").replace("_", "-")] = fn
    return fn


def open_store(args: argparse.Namespace):
    import sqlalchemy.exc

    from annotations.store import Store, resolve_url

    if args.store and Path(args.store).expanduser().is_dir():
        raise ValueError(f"--store {args.store}: is a folder; give a SQLite file (e.g. "
                         f"{Path(args.store) / 'workbench.db'}) or a database URL")
    try:
        return Store.open(args.store)
    except sqlalchemy.exc.SQLAlchemyError as err:  # not a database, a bad URL, no server
        cause = getattr(err, "orig", None) or err
        raise ValueError(f"cannot open the store {shown_url(resolve_url(args.store))}: "
                         f"{cause}") from err


def shown_url(url: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def emit(args: argparse.Namespace, result: Any, text: str | None = None) -> None:
    if getattr(args, "json", False) or text is None:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(text)


@command
def cmd_status(args: argparse.Namespace) -> None:
    counts = open_store(args).counts()
    lines = [f"store: {counts['store']}"] + [
        f"{key}: {value}" for key, value in counts.items() if key not in ("store",)]
    emit(args, counts, "\n".join(lines))


def checked_config(args: argparse.Namespace):
    """The sweep config, checked, its files read and its models found: before the pipeline is
    imported and before the store is opened, so a bad input changes nothing."""
    from pipeline.config import load_config
    from pipeline.preflight import check_inputs

    config = load_config(args.config)
    check_inputs(config)
    return config


@command
def cmd_sweep(args: argparse.Namespace) -> None:
    """The whole sweep here (the default), its jobs handed to Slurm or Ray (--executor), one
    job of it here (--only), its plan (--plan) or where its jobs stand (--status)."""
    if args.plan or args.status:
        return sweep_jobs_view(args)
    config = checked_config(args)
    from pipeline.executors import ExecutorKind, submit
    from pipeline.jobs import find_job, plan
    from pipeline.sweep import run_job, run_sweep

    store = open_store(args)
    if args.only:
        job = find_job(plan(config), args.only)
        summary = run_job(store, config, job, progress=not args.quiet)
        return emit(args, {"job": job.name, **summary.to_dict()})
    executor = ExecutorKind(args.executor)
    if executor is ExecutorKind.LOCAL:
        return emit(args, run_sweep(store, config, progress=not args.quiet).to_dict())
    submission = submit(store, config, plan(config), executor, wait=args.wait)
    said = "ran" if submission.waited else "submitted"
    emit(args, submission.to_dict(),
         f"{said} {submission.jobs} jobs on {executor.value}"
         + "".join(f"\n  {name}: {id_}" for name, id_ in submission.scheduled.items())
         + f"\nwhere they stand: python run.py sweep {args.config} --status")
    submission.check()


def sweep_jobs_view(args: argparse.Namespace) -> None:
    """`--plan`: the jobs and what each waits for (from the config alone); `--status`: each
    job's state, from the store."""
    from pipeline.config import load_config
    from pipeline.jobs import plan, plan_text

    config = load_config(args.config)
    if args.plan:
        jobs = plan(config)
        names = {job.id: job.name for job in jobs}
        return emit(args, [job.to_dict(names) for job in jobs], "\n".join(plan_text(jobs)))
    from annotations.jobs import jobs_table, jobs_text

    table = jobs_table(open_store(args), config.name)
    if table.empty:
        raise ValueError(f"no jobs of sweep {config.name!r} in this store: run it first "
                         f"(python run.py sweep {args.config})")
    emit(args, table.to_dict("records"), "\n".join(jobs_text(table)))


@command
def cmd_demo(args: argparse.Namespace) -> None:
    config = checked_config(args)
    from annotations.leaderboard import judge_leaderboard
    from annotations.summary import sweep_summary
    from pipeline.sweep import run_sweep

    store = open_store(args)
    app = None
    if not args.no_serve:  # the app opens at once; its dashboard fills up as results arrive
        from tool.app import serve

        app = serve(store, args.host, args.port, block=False, bootstrap_admin=True)
    summary = run_sweep(store, config, progress=not args.quiet)
    report = sweep_summary(store)
    boards = [judge_leaderboard(store, [c.source or Path(c.path).stem])
              for c in config.calibration]
    board_lines = [line for board in boards for line in leaderboard_text(board)]
    matched, robust = capability_sections(store, config)
    emit(args, {"sweep": summary.to_dict(), "summary": report.to_dict(),
                "leaderboards": [board.to_dict() for board in boards],
                "matched": [m.to_dict() for m in matched],
                "robustness": [r.to_dict() for r in robust]},
         f"{report.to_text()}\n\nJudges against people on the labelled answers (a trained "
         f"judge: its held-out answers only)\n" + "\n".join(board_lines)
         + "".join("\n\nSafety at matched capability: " + "\n".join(matched_text(m))
                   for m in matched)
         + "".join("\n\nDoes the conclusion hold? " + "\n".join(robustness_text(r))
                   for r in robust)
         + f"\n\npipeline: {summary.seconds:.0f} s "
         f"({', '.join(f'{k} {v:.0f} s' for k, v in summary.stages.items())})")
    if app is not None:
        print(f"the app is still serving on http://{args.host}:{args.port} (Ctrl-C stops it)")
        app.block_thread()


@command
def cmd_serve(args: argparse.Namespace) -> None:
    from tool.app import AppOptions, serve
    from annotations.planner import load_gold

    options = AppOptions(k=args.k, session_size=args.session_size, blind=not args.not_blind,
                         gold=load_gold(args.gold) if args.gold else {})
    serve(open_store(args), args.host, args.port, options)


@command
def cmd_annotators(args: argparse.Namespace) -> None:
    from tool import accounts

    store = open_store(args)
    if args.action == "add":
        if not args.name:
            raise ValueError("annotators add needs a NAME")
        person = accounts.add_annotator(store, args.name, args.role, accounts.read_password())
        emit(args, {"name": person.name, "role": person.role.value},
             f"{person.role.value} {person.name!r} saved")
    else:
        frame = store.annotators_frame()
        emit(args, frame.to_dict("records"), frame.to_string(index=False))


@command
def cmd_judge(args: argparse.Namespace) -> None:
    from pipeline.preflight import check_judge_model
    from pipeline.judge import judge_store
    from pipeline.judges import parse_judge_args

    judge_args = parse_judge_args(args.arg or [])
    check_judge_model(args.judge, judge_args)  # before the judge is recorded in the store
    result = judge_store(open_store(args), args.judge, judge_args, progress=not args.quiet)
    emit(args, result.to_dict() if hasattr(result, "to_dict") else vars(result))


@command
def cmd_train_judge(args: argparse.Namespace) -> None:
    from dataclasses import replace

    from pipeline.train_judge import JUDGE_SETTINGS, JudgeTraining, train_judge

    settings = replace(JUDGE_SETTINGS, **{k: v for k, v in (
        ("epochs", args.epochs), ("learning_rate", args.learning_rate)) if v is not None})
    spec = JudgeTraining(base=args.base, template=args.template,
                         benchmarks=tuple(args.benchmark or ()), holdout=args.holdout,
                         seed=args.seed, train=settings)
    trained = train_judge(open_store(args), spec, Path(args.out), progress=not args.quiet,
                          n_boot=args.n_boot)
    board = trained.leaderboard
    lines = [f"adapter: {trained.adapter} (trained on {trained.train_answers} answers)",
             "judge: --judge llm " + " ".join(f"--arg {k}={v}" for k, v in trained.judge.items()),
             f"held-out answers every judge judged: {board.items} of {trained.heldout_answers}"]
    for r in board.judges.to_dict("records"):
        lines.append(f"  {r['judge']}: kappa {r['kappa']:.3f} "
                     f"[{r['kappa_ci_low']:.3f}, {r['kappa_ci_high']:.3f}] on {r['n']} answers")
    emit(args, trained.to_dict(), "\n".join(lines))


@command
def cmd_score(args: argparse.Namespace) -> None:
    from annotations.records import PromptKind
    from pipeline.judges import parse_judge_args
    from pipeline.score import score_generations

    kinds = [PromptKind(k) for k in args.kind] if args.kind else None
    result = score_generations(open_store(args), args.scorer, parse_judge_args(args.arg or []),
                               kinds=kinds, progress=not args.quiet)
    emit(args, result.to_dict())


@command
def cmd_import(args: argparse.Namespace) -> None:
    from annotations import importers

    store = open_store(args)
    if args.what == "prompts":
        from pipeline.benchmarks import import_prompts

        result = import_prompts(store, args.shape or "plain", args.path, name=args.name,
                                columns=args.columns)
    elif args.what == "published":
        from pipeline.benchmarks.published import import_published

        result = import_published(store, args.path, args.shape, source=args.name,
                                  prompts=args.prompts)
    elif args.what == "labelled":
        result = importers.import_labelled_responses(store, args.path, source=args.name,
                                                     columns=args.columns,
                                                     label_values=args.label_values,
                                                     random_sample=args.random_sample)
    else:
        result = importers.import_human_labels(store, args.path, source=args.name,
                                               columns=args.columns,
                                               label_values=args.label_values)
    emit(args, result)


@command
def cmd_export(args: argparse.Namespace) -> None:
    from annotations.exports import export_table

    emit(args, export_table(open_store(args), args.table, args.path, fmt=args.format))


@command
def cmd_agreement(args: argparse.Namespace) -> None:
    from annotations import io_frames

    if args.labels:
        result = io_frames.agreement_from_csv(args.labels, level=args.level, n_boot=args.n_boot)
    else:
        result = io_frames.agreement_from_store(open_store(args), n_boot=args.n_boot)
    emit(args, result)


@command
def cmd_correct(args: argparse.Namespace) -> None:
    from annotations import io_frames

    emit(args, io_frames.correct_from_csv(args.judged, args.calibration, level=args.level,
                                          n_boot=args.n_boot))


@command
def cmd_labels_needed(args: argparse.Namespace) -> None:
    from annotations import label_budget

    store = open_store(args)
    judge_id = label_budget.judge_by_name(store, args.judge)
    budget = label_budget.labels_needed(store, judge_id, target=args.half_width,
                                        level=args.level, n_next=args.next)
    emit(args, budget.to_dict(), label_budget.budget_text(budget))


@command
def cmd_variance(args: argparse.Namespace) -> None:
    from annotations import io_frames

    if args.outcomes:
        emit(args, io_frames.variance_from_csv(args.outcomes, n_boot=args.n_boot))
    else:
        emit(args, io_frames.variance_from_store(open_store(args), n_boot=args.n_boot))


@command
def cmd_report(args: argparse.Namespace) -> None:
    from annotations.report import report_command

    categories = args.categories.split(",") if args.categories else None
    result = report_command(open_store(args), html_path=args.html, categories=categories,
                            n_boot=args.n_boot)
    if args.json or not args.html:
        emit(args, result)
    else:
        print(f"report written to {result['html']}")


@command
def cmd_matched(args: argparse.Namespace) -> None:
    from annotations import label_budget
    from annotations.matched import matched_report, stored_goals
    from annotations.robustness import conclusion_robustness

    store = open_store(args)
    judge_id = label_budget.judge_by_name(store, args.judge)
    metric, benchmark, target = args.metric, args.benchmark, args.target
    if metric is None or target is None:
        goals = stored_goals(store)
        if not goals:
            raise ValueError("no run was trained to a capability goal: give --metric and "
                             "--target (e.g. --metric rouge_l --target 0.3)")
        metric, benchmark, target = goals[0] if metric is None else (metric, benchmark,
                                                                      goals[0][2])
    matched = matched_report(store, judge_id, metric, target, benchmark=benchmark,
                             interpolate=args.interpolate, n_boot=args.n_boot)
    result, lines = {"matched": matched.to_dict()}, matched_text(matched)
    if args.plot:
        from annotations import report_plots

        with report_plots.style():
            figure = report_plots.safety_capability_figure(matched)
            Path(args.plot).expanduser().parent.mkdir(parents=True, exist_ok=True)
            figure.savefig(args.plot, dpi=110, bbox_inches="tight")
        result["plot"] = args.plot
        lines.append(f"plot written to {args.plot}")
    if args.compare:
        robust = conclusion_robustness(store, args.compare, args.against, metric=metric,
                                       target=target, capability_benchmark=benchmark,
                                       n_boot=args.n_boot)
        result["robustness"] = robust.to_dict()
        lines += robustness_text(robust)
    emit(args, result, "\n".join(lines))


def capability_sections(store, config) -> tuple[list, list]:
    """What the demo prints after its summary when the sweep trains to a capability goal: the
    matched-capability report under the report's main judge, and each data set's conclusion
    against the base model read every way."""
    from annotations import label_budget
    from annotations.matched import matched_report, stored_goals
    from annotations.robustness import conclusion_robustness

    goals = stored_goals(store)
    if not goals:
        return [], []
    judge_id = label_budget.judge_by_name(store, None)
    matched = [matched_report(store, judge_id, metric, target, benchmark=bench)
               for metric, bench, target in goals]
    robust = [conclusion_robustness(store, data.name + ("+self" if data.self_generated else ""))
              for data in config.datasets]
    return matched, robust


def matched_text(matched) -> list[str]:
    """A matched-capability report (annotations.matched) as lines; its numbers as computed."""
    from annotations.report_html import ci, pct

    lines = [f"goal {matched.goal}; harmfulness under {matched.judge}"]
    for r in matched.at_goal.to_dict("records"):
        state = ("reached" + (", interpolated" if r["interpolated"] else "")) if r["reached"] \
            else "NOT reached (last checkpoint)"
        lines.append(f"  {r['checkpoint']} ({r['dataset']}) T={r['temperature']:g}: {state} "
                     f"at {r['capability']:.4g}, {_count(r['examples_seen'])} examples seen; "
                     f"harmfulness {ci(r, 'harmfulness')}"
                     + (f", corrected {ci(r, 'corrected')}" if r["corrected"] == r["corrected"]
                        else ""))
    lines.append("at equal capability:")
    for r in matched.comparisons.to_dict("records"):
        lines.append(f"  {r['comparison']} T={r['temperature']:g}: {pct(r['harmfulness_a'])} vs "
                     f"{pct(r['harmfulness_b'])}, difference {100 * r['difference']:.1f} pp "
                     f"[{100 * r['ci_low']:.1f}, {100 * r['ci_high']:.1f}] over "
                     f"{r['n_prompts']} prompts: {r['conclusion']}")
    return lines + ([matched.note] if matched.note else [])


def _count(value: Any) -> str:
    return "?" if value is None or value != value else str(int(value))


def robustness_text(robust) -> list[str]:
    """A conclusion-robustness table (annotations.robustness) as lines; its numbers as
    computed."""
    flipping = int(robust.table["flips"].sum())
    lines = [f"{robust.a} against {robust.b}: {flipping} of {len(robust.table)} readings flip "
             f"(most common: {robust.reference})"]
    for r in robust.table.to_dict("records"):
        lines.append(f"  {r['alignment']:<16} {r['benchmark']:<16} {r['source']:<28} "
                     f"T={r['temperature']:g} {100 * r['difference']:+.1f} pp "
                     f"[{100 * r['ci_low']:.1f}, {100 * r['ci_high']:.1f}] {r['conclusion']}"
                     + (f"  FLIPS with {r['flips_with']}" if r["flips"] else ""))
    return lines + ([robust.note] if robust.note else [])


def leaderboard_text(board) -> list[str]:
    """A leaderboard (annotations.leaderboard) as lines of text; its numbers as computed."""
    from annotations.report_html import ci, num, pct

    lines = [f"{', '.join(board.benchmarks)}: {board.items} answers, the same for every judge"]
    for r in board.judges.to_dict("records"):
        lines.append(f"  {r['judge']}: kappa {ci(r, 'kappa', num)}, sensitivity "
                     f"{ci(r, 'sensitivity')}, specificity {ci(r, 'specificity')}, "
                     f"unparseable {pct(r['share_unparseable'])}"
                     + (f", AUC {ci(r, 'auc', num)}" if r.get("auc") == r.get("auc") else ""))
    people = board.people[board.people["category"].eq("all")].to_dict("records")
    if people:
        lines.append("  people among themselves (the ceiling): alpha "
                     + ci(people[0], "alpha", num))
    return lines


@command
def cmd_leaderboard(args: argparse.Namespace) -> None:
    from annotations.leaderboard import judge_leaderboard, labelled_benchmarks

    store = open_store(args)
    benchmarks = args.benchmark or labelled_benchmarks(store)
    if not benchmarks:
        raise ValueError("no labelled answers that a judge has judged: import a labelled set "
                         "(`run.py import published ...`) and run `run.py judge` on it first")
    boards = [judge_leaderboard(store, [name], n_boot=args.n_boot) for name in benchmarks]
    emit(args, [board.to_dict() for board in boards],
         "\n".join(line for board in boards for line in leaderboard_text(board)))


def common_options(after_command: bool) -> argparse.ArgumentParser:
    """--store, --json, --quiet and --verbose, taken before the command or after it. After it,
    an option left out must not reset one given before: hence no defaults there (SUPPRESS)."""
    unset = {"default": argparse.SUPPRESS} if after_command else {}
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--store", help="SQLite file or database URL "
                         "(default: $WORKBENCH_STORE, else ./workbench.db)", **unset)
    options.add_argument("--json", action="store_true", help="machine-readable output", **unset)
    options.add_argument("--quiet", action="store_true", help="no progress bars", **unset)
    options.add_argument("-v", "--verbose", action="store_true",
                         help="more logging, and the traceback of an error", **unset)
    return options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run.py", description=__doc__.split("\n\n")[0],
                                     parents=[common_options(after_command=False)])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    shared = common_options(after_command=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text, parents=[shared])

    for commands in (run_commands, judge_commands, data_commands, statistics_commands):
        commands(add)
    return parser


def run_commands(add: AddCommand) -> None:
    """The commands that run the workbench: its pipeline, the demo, the app and its people."""
    add("status", "counts of everything in the store")
    p = add("sweep", "run a sweep config: fine-tune, generate, judge, measure (resumable); "
            "here, or as jobs on Slurm or Ray")
    p.add_argument("config")
    p.add_argument("--executor", choices=["local", "slurm", "ray"], default="local",
                   help="local: every job here, one after another (default); slurm: an sbatch "
                        "job each (submitit); ray: a Ray task each (the config's `executor:`)")
    p.add_argument("--wait", action="store_true", help="slurm: wait until every job has ended")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--plan", action="store_true", help="print the jobs and what each waits "
                      "for, and stop")
    what.add_argument("--only", metavar="JOB", help="run this one job here (a name from --plan)")
    what.add_argument("--status", action="store_true", help="where each job stands (from the "
                      "store)")
    p = add("demo", "the demo sweep on the embedded default model, with the app serving "
            "while it runs")
    p.add_argument("--config", default="configs/demo.yaml")
    p.add_argument("--no-serve", action="store_true", help="no app: stop after the pipeline")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p = add("serve", "the annotation and analysis app over the store (login required)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--k", type=int, default=3, help="people per item")
    p.add_argument("--session-size", type=int, default=20)
    p.add_argument("--gold", help="CSV/JSONL of gold items: generation_id,label")
    p.add_argument("--not-blind", action="store_true", help="show annotators the verdicts")
    p = add("annotators", "add an annotator or admin (password from $WORKBENCH_PASSWORD or a "
            "prompt), or list them")
    p.add_argument("action", choices=["add", "list"])
    p.add_argument("name", nargs="?")
    p.add_argument("--role", default="annotator", choices=["annotator", "admin"])


def judge_commands(add: AddCommand) -> None:
    """The commands that judge or score stored answers, or train a judge on people's labels."""
    p = add("judge", "judge every stored generation this judge has not judged yet")
    p.add_argument("--judge", required=True, help="a registered judge: refusal, llm, http")
    p.add_argument("--arg", action="append", metavar="K=V", help="a judge argument (repeatable)")
    p = add("train-judge", "fine-tune a LoRA judge on a training split of the store's human "
            "labels and score it against people on the held-out split only")
    p.add_argument("--base", default="smollm2", help="the judge's base model")
    p.add_argument("--template", default="sorry_bench", help="a chat template with two answers")
    p.add_argument("--benchmark", action="append", help="train and test on this labelled set "
                   "(repeatable; default: every labelled answer)")
    p.add_argument("--holdout", type=float, default=0.5, help="share of prompts held out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int)
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--out", default="out/judge", help="where the adapter goes")
    p.add_argument("--n-boot", type=int, default=1000)
    p = add("score", "score every stored answer this scorer has not scored yet (toxicity)")
    p.add_argument("--scorer", required=True,
                   help="a registered scorer: perspective, classifier, base-loss")
    p.add_argument("--arg", action="append", metavar="K=V", help="a scorer argument (repeatable)")
    p.add_argument("--kind", action="append", choices=["unsafe", "benign", "capability"],
                   help="only answers to prompts of this kind (repeatable; default: every kind)")


def data_commands(add: AddCommand) -> None:
    """The commands that bring data in and take tables out."""
    p = add("import", "import prompts, externally labelled responses, human labels, or a "
            "published set of human judgments")
    p.add_argument("what", choices=["prompts", "labelled", "labels", "published"],
                   help="prompts: a benchmark file; labelled: (prompt, response, human label) "
                        "rows; labels: long-form (item, annotator, label) for stored generations; "
                        "published: a published human-judgment file in its own shape (--shape)")
    p.add_argument("path", help="a CSV/JSONL/Parquet file (or a hub id for prompts)")
    p.add_argument("--shape", help="for prompts: sorry-bench, harmbench, advbench, "
                   "do-not-answer, plain (default), demo-unsafe, demo-sensitive; for published: "
                   "sorry-bench-human, jailbreakbench-judges, xstest, harmbench-val, wildguardtest")
    p.add_argument("--prompts", help="published: the file with the requests' text where the set "
                   "has none (SORRY-Bench's question.jsonl, HarmBench's behaviours CSV)")
    p.add_argument("--name", help="benchmark or source name stored with the rows")
    p.add_argument("--columns", help="rename columns: prompt=objective,response=answer,...")
    p.add_argument("--label-values", help="what label values mean: 1=refuses,0=complies")
    p.add_argument("--random-sample", action="store_true",
                   help="labelled: the responses are a random sample of answers like the judged "
                        "ones, so their labels calibrate the judge-error correction")
    p = add("export", "export a table to CSV, JSONL or Parquet (format from the suffix), or as "
            "a Hugging Face datasets folder (--format hf)")
    p.add_argument("table", choices=["prompts", "generations", "verdicts", "labels",
                                     "current_labels", "votes", "checkpoints", "runs",
                                     "capability", "annotators"])
    p.add_argument("path")
    p.add_argument("--format", choices=["csv", "jsonl", "parquet", "hf"])


def statistics_commands(add: AddCommand) -> None:
    """The commands that show a statistic (each one function of annotations/)."""
    p = add("agreement", "Krippendorff's alpha of human labels (a long-form CSV, or the store) "
            "and, on the store, each judge against people")
    p.add_argument("--labels", help="CSV with columns unit, annotator, value")
    p.add_argument("--level", default="nominal", choices=["nominal", "ordinal", "interval", "ratio"])
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the CI")
    p = add("correct", "judge-error-corrected harmfulness with its CI: PPI++, Rogan-Gladen and "
            "labels alone, the recommended one on top")
    p.add_argument("--judged", required=True,
                   help="CSV with a column judge (0/1); optional probability, prompt")
    p.add_argument("--calibration", required=True,
                   help="CSV with columns judge, human (complies/refuses/incoherent or 0/1); "
                        "optional probability, prompt, inclusion_probability")
    p.add_argument("--level", type=float, default=0.95)
    p.add_argument("--n-boot", type=int, default=2000)
    p = add("labels-needed", "how many more random labels each checkpoint x temperature needs "
            "for a target half-width of its corrected harmfulness, and the next answers to label")
    p.add_argument("--judge", help="a judge's name as the report shows it, or its id "
                   "(default: the judge the report shows first)")
    p.add_argument("--half-width", type=float, default=0.05, help="target, e.g. 0.05 for 5 points")
    p.add_argument("--level", type=float, default=0.95)
    p.add_argument("--next", type=int, default=20, help="how many answers to name for labelling")
    p = add("variance", "how much of the spread in harmfulness is seed, epoch, temperature, "
            "sampling, prompt and judge")
    p.add_argument("--outcomes", help="CSV with seed, epoch, temperature, sample, prompt, outcome")
    p.add_argument("--n-boot", type=int, default=1000)
    p = add("leaderboard", "every judge against people on the same items of each labelled set, "
            "beside the people's own agreement")
    p.add_argument("--benchmark", action="append", help="a labelled set (an imported set's "
                   "name); repeat for several; default: every labelled set")
    p.add_argument("--n-boot", type=int, default=1000)
    p = add("matched", "harmfulness where each run meets a capability goal, comparisons at equal "
            "capability, and (with --compare) whether the conclusion holds every way")
    p.add_argument("--judge", help="a judge's name as the report shows it, or its id "
                   "(default: the judge the report shows first)")
    p.add_argument("--metric", help="a capability metric (default: the goal runs trained to)")
    p.add_argument("--target", type=float, help="the goal's value of the metric")
    p.add_argument("--benchmark", help="the task set the metric is measured on (default: the "
                   "only one)")
    p.add_argument("--interpolate", action="store_true", help="read harmfulness between the "
                   "two checkpoints around the target, linearly in capability")
    p.add_argument("--compare", metavar="DATA", help="a data set: read its conclusion against "
                   "--against (default: the base model) every way")
    p.add_argument("--against", metavar="DATA", help="the other data set")
    p.add_argument("--plot", metavar="FILE", help="write the safety-against-capability plot "
                   "here (PNG)")
    p.add_argument("--n-boot", type=int, default=1000)
    p = add("report", "the full report: JSON, or one self-contained HTML page")
    p.add_argument("--html", metavar="FILE", help="write the HTML report here")
    p.add_argument("--categories", help="a category subset to show beside all: ids, e.g. 1,2,3")
    p.add_argument("--n-boot", type=int, default=1000)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    # On import, bitsandbytes looks up an optional CPU kernel through the `kernels` package, and
    # both warn when it is missing or the hub is offline: noise here, the plain path is used.
    for noisy in ("bitsandbytes", "kernels"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        check_files(args)
        COMMANDS[args.command](args)
    except Exception as err:
        message = input_error(err)
        if message is None:
            raise  # a bug: its traceback is what is needed
        if args.verbose:
            traceback.print_exc()
        print(f"error: {message}", file=sys.stderr)
        return 2
    return 0


def check_files(args: argparse.Namespace) -> None:
    """A folder given where a file is expected fails here, by the option's name."""
    for name in FILE_ARGS:
        value = getattr(args, name, None)
        if isinstance(value, str) and Path(value).expanduser().is_dir():
            raise ValueError(f"{value}: is a folder, not a file ({name})")


def input_error(err: BaseException) -> str | None:
    """One line saying what was wrong, for an error that bad input or a missing optional
    package caused; None for anything else (a bug). Errors our own packages define, ValueError
    (their base for bad input) and OSError (a missing or unreadable file) are input errors."""
    if isinstance(err, ModuleNotFoundError):
        return None if _top(err.name) in OWN_PACKAGES else missing_package(err.name or "")
    if isinstance(err, OSError) and err.filename and err.strerror:
        return f"{err.filename}: {err.strerror}"
    if isinstance(err, (ValueError, OSError)) or _top(type(err).__module__) in OWN_PACKAGES:
        return " ".join(str(err).split()) or type(err).__name__  # one line, whatever it said
    return None


def _top(module: str | None) -> str:
    return (module or "").split(".")[0]


def missing_package(module: str) -> str:
    extra = EXTRAS.get(_top(module))
    if extra:
        fix = f"pip install 'safety-workbench[{extra}]' (or pip install -e '.[{extra}]')"
    else:
        fix = f"install the package that provides it (e.g. pip install {_top(module)})"
    return f"the Python module {_top(module)!r} is not installed: {fix}"


if __name__ == "__main__":
    sys.exit(main())
