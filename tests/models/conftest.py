"""The Triton backend's tests run in the interpreter on CPU and on a GPU, as the kernel tests do."""
from __future__ import annotations

from tests.kernels.conftest import mode  # noqa: F401  (the fixture, shared with tests/kernels)
