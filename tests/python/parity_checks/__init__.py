"""Check modules of tests/python/parity.py.

Each module exposes:
    NAME: short name used by `parity.py --only NAME` and in the report
    TITLE: one line shown as the heading of the module's rows
    run(ctx, report): adds rows to `report` (a parity_checks.common.Report); `ctx` is a
        parity_checks.common.Context (repo paths, the berthash runner, a scratch dir,
        the preset configs).

A module that needs something absent (a venv package, a berthash subcommand) adds a SKIP
row saying why instead of failing. To add checks (e.g. training parity), write a module
here and append its name to MODULES below.
"""

MODULES = ["roundtrip", "tokenizer", "training", "glue", "sentence_embeddings", "embedding_training", "onnx_export"]
