# Runtime hook: runs before Folio's code in the frozen app. Folio never fetches from a model
# hub; the frozen app has no Makefile or shell profile to say so, so it says so itself.
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
