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
    multiprocessing.freeze_support()  # the model-host child (spawn) starts here too
    # Hidden, for packaging/verify.sh and tests/test_packaged.py: import every module and look
    # for every data file a real session used (packaging/folio_bundle_check.py). Handled here,
    # before Folio's own command line, so app/cli/ does not know it.
    if len(sys.argv) == 3 and sys.argv[1] == "--check-bundle":
        import folio_bundle_check

        sys.exit(folio_bundle_check.check(sys.argv[2]))
    from app.cli import main

    sys.exit(main())
