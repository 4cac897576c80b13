"""The frozen app's entry point: the same `folio` command, with offline defaults set before
anything imports huggingface_hub or transformers (the frozen app has no Makefile or conftest
to set them)."""

import multiprocessing
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

if __name__ == "__main__":
    multiprocessing.freeze_support()
    from app.cli import main

    sys.exit(main())
