# Two entry points a new machine needs: `make run` and `make test`.
# Both create .venv when missing and install Folio with everything it needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.folio-installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install run test bench bench-ingest bench-retrieval bench-latency corpus clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(VENV)/bin/folio

test: install
	$(PY) -m pytest

corpus:
	bash ../shared/corpus/fetch-octave-docs.sh benchmarks/.corpus

bench: bench-ingest bench-retrieval bench-latency

bench-ingest: install corpus
	$(PY) benchmarks/bench_ingest.py benchmarks/.corpus/octave.pdf

bench-retrieval: install corpus
	$(PY) benchmarks/bench_retrieval.py benchmarks/.corpus/octave.pdf

bench-latency: install
	$(PY) benchmarks/bench_search_latency.py

clean:
	rm -rf $(VENV) build dist *.egg-info
