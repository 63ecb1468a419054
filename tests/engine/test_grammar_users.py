"""What byte-bounded grammar caches rely on: live users counted weakly, sizes of cached compiles, and memory
given back after a large eviction."""
from __future__ import annotations

import concurrent.futures as cf

from lightllm_struct.engine import grammar_users
from lightllm_struct.engine.grammar_users import GrammarUsers, future_nbytes, release_memory


class Grammar:
    def __init__(self, nbytes: int = 0) -> None:
        self._nbytes = nbytes

    def nbytes(self) -> int:
        return self._nbytes


class User:
    pass


def _done(value=None, exc=None) -> cf.Future:
    future: cf.Future = cf.Future()
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(value)
    return future


def test_a_grammar_is_in_use_while_a_user_lives():
    users, grammar = GrammarUsers(), Grammar()
    future = _done(grammar)
    assert not users.in_use(future)
    a, b = User(), User()
    users.add(grammar, a)
    users.add(grammar, b)
    assert users.count(grammar) == 2 and users.in_use(future)
    del a
    assert users.count(grammar) == 1
    del b
    assert users.count(grammar) == 0 and not users.in_use(future)
    users.add(grammar, 5)  # an int cannot be weakly held: not counted, no error
    assert users.count(grammar) == 0


def test_a_running_compile_is_in_use_and_a_failed_one_is_not():
    users = GrammarUsers()
    assert users.in_use(cf.Future())
    assert not users.in_use(_done(exc=ValueError("x")))


def test_future_nbytes_reads_the_grammar_once_done():
    assert future_nbytes(cf.Future()) == 0
    assert future_nbytes(_done(exc=ValueError("x"))) == 0
    assert future_nbytes(_done(Grammar(1234))) == 1234
    assert future_nbytes(_done(frozenset({1}))) == 0  # no estimate: counts nothing


def test_memory_is_trimmed_once_an_evicted_grammar_is_freed(monkeypatch):
    import gc
    import threading

    trimmed = threading.Event()
    monkeypatch.setattr(grammar_users, "_TRIM", lambda pad: trimmed.set())
    monkeypatch.setattr(grammar_users, "_TRIM_DELAY_S", 0.0)
    assert release_memory([_done(Grammar())], grammar_users.RELEASE_MIN_BYTES - 1) is False
    held = Grammar()
    held.cycle = held  # freed by the cyclic collector only, as a compiled grammar is
    assert release_memory([_done(held)], grammar_users.RELEASE_MIN_BYTES) is True
    gc.collect()
    assert not trimmed.wait(0.5)  # still referenced here: nothing freed, nothing trimmed
    del held
    gc.collect()
    assert trimmed.wait(10)
