"""The lexer builders' numba code loaded (or compiled) once a process, before any compile deadline.

numba compiles a function at its first call, or loads it from its on-disk cache when one exists. On a fresh
install there is none, and compiling the subset construction and the product builder takes tens of seconds
on a small machine; charged to the first grammar's deadline, it made a fresh process's first compiles time out
(every fixture compile of the GPU test run, and the first two constrained requests of a new engine waited 5.5
and 4.1 s). ``GrammarCompiler`` calls ``warm_lexing_jit`` on construction, outside its deadlines, and compile
workers construct theirs before they report ready. The scan walks warm themselves (``PreorderTrie``).
"""
from __future__ import annotations

import threading

_lock = threading.Lock()
_warm = False


def warm_lexing_jit() -> None:
    """Run the subset construction and the product builder once on tiny inputs of their real argument types
    (through the same entry points compiles use, so numba specialises them exactly as a compile would)."""
    global _warm
    if _warm:
        return
    with _lock:
        if _warm:
            return
        from lightllm_struct.grammar.lexing.product_jit import product
        from lightllm_struct.grammar.lexing.regex_dfa import regex_dfa

        first, second = regex_dfa("[a-c]+x"), regex_dfa("a|by*")
        product([first.table, second.table], max_states=64)
        _warm = True
