# Two entry points a new machine needs: `make run` and `make test`.
# Both create .venv when missing and install Folio with everything it needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.folio-installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install run test lock bench bench-ingest bench-retrieval bench-latency corpus clean
.PHONY: package package-build package-verify package-bench test-packaged

LOCK   := locks/linux-x86_64.txt

# Everything comes from the lock, hash-checked; llama-cpp-python is compiled portably (AVX2, no
# AVX-512/AMX) into a cache named after its build arguments (packaging/install_deps.py).
$(STAMP): pyproject.toml $(LOCK) locks/build-tools.txt packaging/install_deps.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) packaging/install_deps.py --lock $(LOCK)
	@touch $(STAMP)

install: $(STAMP)

# Qt's xcb plugin needs system libraries a fresh Debian/Ubuntu lacks: as root, install them;
# otherwise folio itself names the packages and exits 1.
run: install
	@pkgs="$$($(PY) -m app.ui.platform_check --missing-packages)"; \
	if [ -n "$$pkgs" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing what Qt's xcb plugin needs: $$pkgs"; \
		apt-get install -y -q $$pkgs || { apt-get update -q && apt-get install -y -q $$pkgs; }; \
	fi
	$(VENV)/bin/folio

# Resolve the locks again (after a requirement in pyproject.toml changed, or to take newer
# releases); tests/test_dependency_lock.py fails while pyproject and the locks disagree.
lock:
	bash packaging/lock.sh

test: install
	$(PY) -m pytest

corpus:
	bash benchmarks/fetch_question_sets.sh benchmarks/.corpus

bench: bench-ingest bench-retrieval bench-latency

bench-ingest: install corpus
	$(PY) benchmarks/bench_ingest.py benchmarks/.corpus/octave.pdf

bench-retrieval: install corpus
	$(PY) benchmarks/check_questions.py
	$(PY) benchmarks/bench_retrieval.py

bench-latency: install
	$(PY) benchmarks/bench_search_latency.py

# Packaged executables (Linux here; Windows and macOS in .github/workflows/release.yml).
# `make package` builds dist/folio/, the tarball and the .deb, installs the .deb (root) and
# checks the installed app in a clean environment: self-test and window start-up.
PKG_STAMP := $(VENV)/.folio-package-installed

# The lock carries the package extra (PyInstaller) already: `make install` installed it.
$(PKG_STAMP): pyproject.toml $(LOCK) | $(STAMP)
	$(PY) -c 'import PyInstaller' && touch $@

# Build, then verify, in that order also under `make -j` (prerequisites could run together).
package:
	$(MAKE) package-build
	$(MAKE) package-verify

package-build: install $(PKG_STAMP)
	bash packaging/build.sh

package-verify:
	bash packaging/verify.sh

# Sizes, cold start to a visible window and self-test time of the installed package.
RUNS ?= 5
package-bench:
	RUNS=$(RUNS) bash packaging/measure.sh

# The opt-in test of the artifact (builds dist/folio/ first when it is missing).
test-packaged: install $(PKG_STAMP)
	FOLIO_TEST_PACKAGED=1 $(PY) -m pytest -m packaged tests/test_packaged.py

clean:
	rm -rf $(VENV) build dist *.egg-info
