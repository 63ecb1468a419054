"""Products and minimisation of interegular automata, bounded and under the compile deadline.

interegular's own ``&``, ``-`` and ``reduce()`` crawl new states through ``list.index`` (quadratic in the
states) and check nothing: ``allOf`` of three patterns, their ``not``s and a ``minLength: 100`` (a real
dev-corpus schema) computed for many minutes past any deadline. These are the same constructions with a
dictionary index, the current compile deadline checked as they go and a state bound whose excess is an
``OverflowError`` (the callers' "too large to intersect" refusal).
"""
from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

from interegular.fsm import FSM, Alphabet

from lightllm_struct.grammar.deadline import current_deadline

MAX_PRODUCT_STATES = 20_000
_CHECK_EVERY = 256  # states crawled between two deadline checks


def _crawl(alphabet: Alphabet, initial: Hashable, final: Callable[[Hashable], bool],
           follow: Callable[[Hashable, object], Hashable | None]) -> FSM:
    """The automaton of the states reachable from ``initial`` (``follow`` None: no transition)."""
    deadline = current_deadline()
    states, index = [initial], {initial: 0}
    finals, fmap = set(), {}
    i = 0
    while i < len(states):
        if i % _CHECK_EVERY == 0:
            deadline.check()
        state = states[i]
        if final(state):
            finals.add(i)
        row = fmap[i] = {}
        for transition in alphabet.by_transition:
            nxt = follow(state, transition)
            if nxt is None:
                continue
            j = index.get(nxt)
            if j is None:
                if len(states) >= MAX_PRODUCT_STATES:
                    raise OverflowError(f"automaton product over {MAX_PRODUCT_STATES} states")
                j = index[nxt] = len(states)
                states.append(nxt)
            row[transition] = j
        i += 1
    return FSM(alphabet=alphabet, states=range(len(states)), initial=0, finals=finals, map=fmap,
               __no_validation__=True)


def product(fsms: Sequence[FSM], test: Callable[[list[bool]], bool]) -> FSM:
    """The automaton run of ``fsms`` side by side, accepting where ``test`` of their acceptances holds."""
    alphabet, new_to_old = Alphabet.union(*(f.alphabet for f in fsms))
    parts = tuple(zip(fsms, new_to_old))

    def follow(current: tuple, transition) -> tuple | None:
        nxt = tuple(None if s is None else f.map.get(s, {}).get(old[transition]) for s, (f, old) in zip(current, parts))
        return None if all(s is None for s in nxt) else nxt

    def final(state: tuple) -> bool:
        return test([s is not None and s in f.finals for s, f in zip(state, fsms)])

    return _crawl(alphabet, tuple(f.initial for f in fsms), final, follow)


def _reversed(fsm: FSM) -> FSM:
    reverse: dict[tuple, set] = {}
    for state, row in fsm.map.items():
        for transition, nxt in row.items():
            reverse.setdefault((nxt, transition), set()).add(state)

    def follow(current: frozenset, transition) -> frozenset | None:
        nxt = frozenset(s for state in current for s in reverse.get((state, transition), ()))
        return nxt or None

    return _crawl(fsm.alphabet, frozenset(fsm.finals), lambda state: fsm.initial in state, follow)


def minimal(fsm: FSM) -> FSM:
    """The minimal automaton of ``fsm``'s language (Brzozowski: reverse, determinise, twice)."""
    return _reversed(_reversed(fsm))
