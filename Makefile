# Everything a fresh machine needs. `make demo` runs the MNIST demo, `make test`
# runs the test suite on the TensorFlow, JAX and PyTorch backends.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
MNIST ?= $(firstword $(wildcard ../shared/datasets/mnist.npz))

.PHONY: install demo test test-tensorflow test-jax test-torch clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: setup.cfg setup.py | $(BIN)/python
	# torch by exact version: its CPU build is on disk here, a bare `torch` pulls CUDA.
	$(BIN)/pip install -q "torch==2.13.0"
	$(BIN)/pip install -q -e ".[jax,torch,test]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/python examples/quickstart.py $(if $(MNIST),--data $(MNIST))

test: test-tensorflow test-jax test-torch

test-tensorflow test-jax test-torch: test-%: install
	KERAS_BACKEND=$* $(BIN)/python -m pytest

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
