"""The frozen app's entry point: the same `folio` command, with offline defaults set before
anything imports huggingface_hub or transformers (the frozen app has no Makefile or conftest
to set them)."""

import multiprocessing
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# The windowed executable (folio-gui on Windows and macOS, console=False) starts with
# sys.stdout and sys.stderr set to None: a print(), a logging StreamHandler or a tqdm progress
# bar (transformers, sentence-transformers) would raise on them. Give them somewhere to go.
for _name in ("stdout", "stderr"):
    if getattr(sys, _name) is None:
        setattr(sys, _name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115

if __name__ == "__main__":
    multiprocessing.freeze_support()
    from app.cli import main

    sys.exit(main())
