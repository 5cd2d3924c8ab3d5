# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates .venv on first use and installs the project into it.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: venv demo test test-fast soak lint bench quality clean browser-deps

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing pinclip and its dependencies into $(VENV) (a few minutes the first time)"
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -e ".[all,dev]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/pinclip demo

# Debian's chromium for the web-page test (tests/serve/test_browser.py; Playwright cannot
# download its own browsers here). `make test` installs it in CI, or when it is missing and
# apt-get is available; otherwise that one test skips and says why.
browser-deps:
	command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

test: $(STAMP)
	@if [ "$$CI" = "true" ] || { ! command -v chromium >/dev/null && command -v apt-get >/dev/null; }; then \
		$(MAKE) --no-print-directory browser-deps; fi
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow and not soak"

# Long fault and load runs (5 SIGKILLs in training, 60 s at concurrency 32, ...); figures in
# runs/reliability-figures.json, quoted in RELIABILITY.md.
soak: $(STAMP)
	PINCLIP_RELIABILITY_FIGURES=runs/reliability-figures.json $(PY) -m pytest tests/reliability -m soak

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

bench: $(STAMP)
	$(PY) bench/run_all.py

# One config on both development catalogs: PinCLIP, λ=0 and open_clip trained, then
# `pinclip compare` on each; writes bench/results/quality.json (docs/evaluation.md).
data/mdi:
	$(VENV)/bin/pinclip catalog build mdi data/mdi

quality: $(STAMP) data/mdi
	test -d data/emoji || $(VENV)/bin/pinclip catalog build emoji data/emoji
	$(PY) bench/quality.py --catalog emoji=data/emoji --catalog mdi=data/mdi --out runs/quality
	$(PY) bench/docs_tables.py

clean:
	rm -rf $(VENV) runs data/emoji
