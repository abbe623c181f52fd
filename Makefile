# Everything bootstraps from python3 and a package index: uv is installed into .uv-bootstrap/, the
# workspace into .venv/ (all rung packages editable, plus the dev tools).
PY ?= python3
UV := .uv-bootstrap/bin/uv
export UV_PYTHON := $(shell $(PY) -c "import sys; print(sys.executable)")
export UV_PYTHON_DOWNLOADS := never
RUN := $(UV) run --no-sync

.PHONY: setup demo ladder test test-all test-gpu gpu-check ptx-check bench clean

$(UV):
	$(PY) -m venv .uv-bootstrap
	.uv-bootstrap/bin/pip install -q uv

.venv/.synced: $(UV) pyproject.toml packages/*/pyproject.toml
	$(UV) sync --all-packages --all-groups --compile-bytecode  # as pip does: no per-process recompiles where PYTHONDONTWRITEBYTECODE is set
	touch $@

setup: .venv/.synced

demo: setup  ## the main job: the ladder as a loop on its embedded example (tools/pipeline/water.toml)
	$(RUN) python -m tools.pipeline --out pipeline-out

ladder: setup  ## every rung once on one water molecule (each package's ladder step)
	$(RUN) python tools/ladder.py --out ladder-out

test: setup  ## everything but the slow tests; numba.cuda kernels run in the CUDA simulator
	NUMBA_ENABLE_CUDASIM=1 $(RUN) pytest -m "not slow" -q

test-all: setup
	NUMBA_ENABLE_CUDASIM=1 $(RUN) pytest -q

test-gpu: setup  ## on a machine with an NVIDIA GPU and the [cuda12] extra
	$(RUN) pytest -m gpu -q

gpu-check: setup  ## on a GPU machine first: every gpu test and the GPU benchmarks, one report (gpu-check/report.md)
	$(RUN) python tools/gpu_check.py --out gpu-check

ptx-check: setup  ## no GPU needed: compile every numba.cuda kernel to PTX with the [cuda12] wheels (in .ptx-venv/)
	NUMBA_ENABLE_CUDASIM=1 $(RUN) python tools/ptx_check.py record --signatures .ptx-venv.signatures.json
	test -x .ptx-venv/bin/python || $(UV) venv -q .ptx-venv
	$(UV) pip install -q -p .ptx-venv/bin/python "numba-cuda[cu12]>=0.20" numpy
	env -u NUMBA_ENABLE_CUDASIM .ptx-venv/bin/python tools/ptx_check.py compile --signatures .ptx-venv.signatures.json

bench: setup  ## the kernel benchmark suite (tools/bench); see tools/bench/README.md
	$(RUN) python -m tools.bench --out bench-out

clean:
	rm -rf .venv .uv-bootstrap ladder-out pipeline-out bench-out gpu-check .ptx-venv .ptx-venv.signatures.json
