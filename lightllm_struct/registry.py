"""A named registry of implementations, with the "Supported: ..." error (mini-sglang's ``utils/registry.py``)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from lightllm_struct.errors import LightLLMStructError

T = TypeVar("T")


class UnknownChoiceError(LightLLMStructError):
    """A configuration names an implementation that is not registered: the operator's mistake."""

    http_status = 500
    error_type = "config_error"


class Registry(Generic[T]):
    """Implementations of one kind (``what``: "kernel backend", ...) by name; ``register`` is a decorator.

    Entries are factories, called on :meth:`get`, so an implementation's imports (Triton) run only when chosen.
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def add(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f"{self.what} {name!r} is registered twice")
            self._factories[name] = factory
            return factory
        return add

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._factories)

    def get(self, name: str, *args, **kwargs) -> T:
        """Build the implementation ``name`` with ``args``/``kwargs``.

        Raises
        ------
        UnknownChoiceError
            For a name that is not registered; the message lists the supported ones.
        """
        factory = self._factories.get(name)
        if factory is None:
            raise UnknownChoiceError(f"unknown {self.what} {name!r}. Supported: {', '.join(self.names)}",
                                     param=self.what.replace(" ", "_"))
        return factory(*args, **kwargs)
