"""hypothesis-jsonschema 0.23 on hypothesis >= 6.150: its object strategy calls ``many(...).more()``, which
newer hypothesis replaced by ``with many(...) as elements: for _ in elements``. This adapter gives the old
interface on top of the new one, so the generator keeps working without pinning an old hypothesis."""
from __future__ import annotations

import hypothesis.internal.conjecture.utils as cu
import hypothesis_jsonschema._from_schema as hjs_from_schema

_new_many = cu.many


class _ManyWithMore:
    def __init__(self, *args, **kwargs) -> None:
        self._many = _new_many(*args, **kwargs)
        self._many.__enter__()
        self._steps = iter(self._many)

    def more(self) -> bool:
        try:
            next(self._steps)
        except StopIteration:
            self._many.__exit__(None, None, None)
            return False
        return True

    def reject(self, why: str | None = None) -> None:
        self._many.reject(why)


class _CuShim:
    many = _ManyWithMore

    def __getattr__(self, name):
        return getattr(cu, name)


if not hasattr(_new_many, "more"):
    hjs_from_schema.cu = _CuShim()
