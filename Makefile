# pylmer: `make demo` runs the main job, `make test` runs the test suite.
# Both first install what is missing (Debian's R + lme4, a .venv with pylmer[dev]), idempotently.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# R, lme4 and the R packages pylmer's inference builds on; OpenBLAS makes R's BLAS fast
# (Debian's default reference BLAS makes an InstEval fit 2.7x slower).
R_PKGS := lmerTest jsonlite emmeans pbkrtest performance merTools optimx dfoptim numDeriv statmod glmmTMB
R_DEBS := r-base-core r-base-dev r-cran-lme4 $(addprefix r-cran-,$(shell echo $(R_PKGS) | tr A-Z a-z)) libopenblas0-pthread
R_CHECK := Rscript -e 'stopifnot(packageVersion("lme4") >= "1.1.31"); for (p in strsplit("$(R_PKGS)", " ")[[1]]) loadNamespace(p)'
# Debian only: OpenBLAS installed for R (R finds it through the libblas.so.3 alternative)
BLAS_CHECK := { ! command -v dpkg >/dev/null || dpkg -s libopenblas0-pthread >/dev/null 2>&1; }

.PHONY: setup r venv demo test test-fast bench lint format clean

setup: r venv

# R and the R packages: installed with apt-get when missing (root only).
r:
	@if $(R_CHECK) >/dev/null 2>&1 && $(BLAS_CHECK); then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo ">> installing R and lme4 from Debian: $(R_DEBS)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(R_DEBS) python3-venv python3-dev >/dev/null \
		&& $(R_CHECK) >/dev/null; \
	else \
		echo "R with lme4 >= 1.1-31 and the R packages $(R_PKGS) is required but missing."; \
		echo "  Debian/Ubuntu (as root): apt-get install $(R_DEBS)"; \
		echo "  conda: conda env create -f environment.yml && conda activate pylmer"; \
		exit 1; \
	fi

# The virtualenv, rebuilt only when pyproject.toml changes. rpy2 builds against the R above.
venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml | r
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

demo: setup
	$(PY) examples/sleepstudy.py
	$(PY) examples/mixedml_longitudinal.py
	@echo ">> figures written to out/"

test: setup
	$(PY) -m pytest -q

# The tests that need no R (tests/unit/): seconds.
test-fast: venv
	$(PY) -m pytest -q tests/unit

# Each bench runs its baselines (plain Rscript, mixedlm, MERF, GPBoost) in the same run.
bench: setup
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) bench/convert.py
	$(PY) bench/lmer.py
	$(PY) bench/glmer.py
	$(PY) bench/inference.py
	$(PY) bench/mixedml_refit.py
	$(PY) bench/mixedml.py
	$(PY) bench/mixedml_variance.py
	$(PY) bench/mixedml_classifier.py
	$(PY) bench/parallel.py
	$(PY) bench/scale.py
	$(PY) bench/power.py
	$(PY) bench/glmmtmb.py
# Long runs, by hand: bench/scaling.py (1e6 rows), bench/sigrist.py (real data, GPBoost),
# bench/soak.py (tens of thousands of fits), bench/load.py (threads, 20,000 responses).

lint: venv
	$(VENV)/bin/ruff check pylmer tests bench examples
	$(VENV)/bin/ruff format --check pylmer tests bench examples

format: venv
	$(VENV)/bin/ruff format pylmer tests bench examples
	$(VENV)/bin/ruff check --fix pylmer tests bench examples

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache .hypothesis
