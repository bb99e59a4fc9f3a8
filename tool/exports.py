"""The Exports tab (admins only): labels (every label with `current` marked, or the current ones
alone), votes, verdicts and the other tables as CSV, JSONL, Parquet or a Hugging Face datasets
folder (zipped for the download), written by `annotations.exports` into this app's private
temporary folder.

The handler checks the admin role on the server before anything is read; the file then reaches
the browser through Gradio's cache under a content-hash path that nobody else is told.
"""

from __future__ import annotations

import secrets
import shutil
import time
from pathlib import Path

import gradio as gr

from annotations.exports import export_table
from tool.context import AppContext

TABLES = ("labels", "current_labels", "votes", "verdicts", "generations", "prompts",
          "checkpoints")
FORMATS = {"CSV": "csv", "JSONL": "jsonl", "Parquet": "parquet",
           "Hugging Face datasets (zip)": "hf"}


def export(ctx: AppContext, table: str, fmt: str) -> Path:
    """Write one table to a new file in the app's export folder and return its path."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}")
    suffix = FORMATS.get(fmt, fmt)
    if suffix not in FORMATS.values():
        raise ValueError(f"unknown format {fmt!r}")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = ctx.export_dir / secrets.token_hex(8)  # one folder per file: names never collide
    path = folder / f"workbench-{table}-{stamp}.{suffix}"
    export_table(ctx.store, table, path, suffix)
    if suffix == "hf":  # a folder: one file to download, unzipped it is what load_from_disk reads
        return Path(shutil.make_archive(str(path), "zip", root_dir=path))
    return path


def build_tab(ctx: AppContext, blocks: gr.Blocks) -> gr.Tab:
    with gr.Tab("Exports", id="exports", visible=False) as tab:
        with gr.Row():
            table_dd = gr.Dropdown(label="Table", choices=list(TABLES), value="labels")
            format_dd = gr.Dropdown(label="Format", choices=list(FORMATS), value="CSV")
        go = gr.Button("Export", variant="primary", elem_id="wb-export")
        out = gr.File(label="Download", interactive=False, elem_id="wb-export-file")

        def on_export(table: str, fmt: str, request: gr.Request) -> str:
            ctx.admin(request)
            return str(export(ctx, table, fmt))

        go.click(on_export, [table_dd, format_dd], out, api_name="export",
                 api_visibility="undocumented")
    return tab
