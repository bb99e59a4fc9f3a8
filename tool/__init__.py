"""The workbench app (Gradio): annotate, compare, live sampling, trajectory, validate, exports.

    from tool.app import serve
    serve(Store.open("workbench.db"), host="127.0.0.1", port=7860)

`tool.app.build_app(store, options)` builds the Blocks (one module per tab, no module-level
state); `tool.accounts` holds the password hashing and role checks; `tool.assign` plans which
answers each annotator labels next.
"""
