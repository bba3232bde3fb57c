# rfgraph: `make demo` and `make test` set everything up from a fresh clone.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.rfgraph-installed
PYTHON ?= python3

.PHONY: demo test fuzz bench bench-peers lint dot clean docs

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first and pinned: this machine has the CPU wheel on disk; a bare `torch`
	# requirement would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q numpy
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# Graphviz `dot` (Debian package graphviz), installed when missing and running as root.
dot:
	@command -v dot >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -q && apt-get install -y -q graphviz) >/dev/null; \
	  else \
	    echo "rfgraph: Graphviz 'dot' is missing; install it with: sudo apt-get install -y graphviz"; \
	  fi; }

demo: $(STAMP) dot
	@mkdir -p out
	$(VENV)/bin/rfgraph analyze --at H=224,W=224 | tee out/seed_tour.txt
	$(VENV)/bin/rfgraph analyze --at H=224,W=224 --json > out/seed_tour.json
	$(VENV)/bin/rfgraph analyze > out/seed_tour_symbolic.txt
	$(VENV)/bin/rfgraph analyze --at H=224,W=224 --render out/seed_tour.svg > /dev/null
	$(VENV)/bin/rfgraph analyze --at H=224,W=224 --render out/seed_tour.png > /dev/null
	@echo "wrote out/seed_tour.txt, out/seed_tour.json, out/seed_tour_symbolic.txt, out/seed_tour.svg, out/seed_tour.png"

test: $(STAMP) dot
	$(PY) -m pytest

# Long random fuzzing (not in CI): hypothesis without derandomisation, many examples
# (tests/test_verify_fuzz.py: 4x the fuzz profile's max_examples, 20000 random models, ~5 min).
# tests/test_global_fields.py: random SE/residual DAGs checked against the gradient probe.
# tests/test_fields_fuzz.py (last): random DAGs of up to 8 ops, the field at every position of every
# node against torch (tests/fieldcheck.py), 20,000 models. Models of the one known class (~1-2%:
# virtual elements after a crop or a transposed conv's padding, docs/verify.md "Fields at every
# position") are counted, not failed, up to 3% of the examples.
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest tests/test_rules_property.py tests/test_verify_fuzz.py \
	  tests/test_global_fields.py tests/test_fields_fuzz.py tests/test_costs_fuzz.py -x

bench: $(STAMP)
	$(PY) benchmarks/bench_analyze.py

# rfgraph's whole path against torchinfo, thop, ptflops, calflops and FlopCounterMode
# (docs/performance.md, "Peers"). The peers and torchvision are not project dependencies: set
# SIDE_PY to a Python that has them (e.g. make bench-peers SIDE_PY=/work/sidevenv/bin/python);
# without it the project venv runs the zoo models and skips missing peers with a note.
# ARGS passes options, e.g. ARGS='--quick' or ARGS='--repeats 5 --write'.
bench-peers: $(STAMP)
	$(if $(SIDE_PY),$(SIDE_PY),$(PY)) benchmarks/bench_peers.py $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check rfgraph tests examples benchmarks
	$(PY) -m mypy

# docs/cli.md's reference block, generated from the argparse parser (tests/test_cli_doc.py
# fails when it is stale).
docs: $(STAMP)
	$(PY) -m rfgraph.cli_doc

clean:
	rm -rf $(VENV) out .pytest_cache .hypothesis
