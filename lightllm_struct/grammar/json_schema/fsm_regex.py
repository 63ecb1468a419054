"""Boolean operations on regular languages, back to regex text: intersection, difference, complement.

The grammar's terminals are regex text, so a language built by intersecting two regexes (a pattern and the
strings that are no declared key, a pattern and a length limit) must be written back as a regex. interegular
gives the automata and their products; :func:`to_regex` turns a minimal automaton into a regex by state
elimination (Brzozowski-McCluskey), eliminating the state with the fewest in-times-out edges first. The result
can grow exponentially in the number of states, so it is bounded: beyond ``MAX_REGEX_CHARS`` the caller gets
None and refuses the keyword, never a silently wider language.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import interegular
from interegular.fsm import FSM, anything_else

from lightllm_struct.grammar.json_schema.fsm_ops import minimal, product
from lightllm_struct.grammar.json_schema.regex_util import (MAX_CODE_POINT, alt, char_class, complement, is_atom,
                                                           normalize)

Render = Callable[[list[tuple[int, int]]], "str | None"]
MAX_REGEX_CHARS = 60_000
MAX_STATES = 400


@functools.lru_cache(maxsize=512)
def fsm_of(regex: str) -> FSM:
    """The (minimal) automaton of a full-match regex."""
    return interegular.parse_pattern(regex).to_fsm().reduce()


def intersection(regexes: Sequence[str | FSM], excluded: Sequence[str | FSM] = (), *,
                 render: Render = char_class) -> str | None:
    """A regex for strings matching every one of ``regexes`` (regex text or automata) and none of ``excluded``.

    ``render`` writes one transition's code points as regex text (strings.unit: as JSON string content).
    Returns None when the language is empty; raises OverflowError when it has no regex within the bounds.
    """
    automata = [r if isinstance(r, FSM) else fsm_of(r) for r in regexes]
    k = len(automata)
    automata += [other if isinstance(other, FSM) else fsm_of(other) for other in excluded]
    fsm = automata[0] if len(automata) == 1 else product(
        automata, lambda accepts: all(accepts[:k]) and not any(accepts[k:]))
    fsm = minimal(fsm)
    if fsm.empty():
        return None
    return to_regex(fsm, render=render)


def _class_ranges(fsm: FSM) -> dict[int, list[tuple[int, int]]]:
    """Transition class id -> the code points of its characters."""
    listed: dict[int, list[int]] = {}
    other = None
    for symbol, cls in fsm.alphabet.items():
        if symbol is anything_else:
            other = cls
        else:
            listed.setdefault(cls, []).append(ord(symbol))
    every_listed = normalize((cp, cp) for cps in listed.values() for cp in cps)
    out = {}
    for cls in set(listed) | ({other} if other is not None else set()):
        ranges = normalize((cp, cp) for cp in listed.get(cls, []))
        if cls == other:
            ranges = normalize(ranges + complement(every_listed))
        out[cls] = [(lo, min(hi, MAX_CODE_POINT)) for lo, hi in ranges]
    return out


def to_regex(fsm: FSM, *, render: Render = char_class) -> str:
    """A regex with exactly ``fsm``'s language (non-empty), each transition written by ``render``.

    Raises OverflowError past the size bounds.
    """
    classes = _class_ranges(fsm)
    live = _live_states(fsm)
    if len(live) > MAX_STATES:
        raise OverflowError(f"automaton of {len(live)} states")
    start, end = "start", "end"
    edges: dict[object, dict[object, list[str]]] = {s: {} for s in list(live) + [start, end]}
    edges[start][fsm.initial] = [""]
    for state in live:
        by_dest: dict[object, list[tuple[int, int]]] = {}
        for cls, dest in fsm.map.get(state, {}).items():
            if dest in live and cls in classes:
                by_dest.setdefault(dest, []).extend(classes[cls])
        for dest, ranges in by_dest.items():  # parallel edges: one character class
            text = render(normalize(ranges))
            if text is not None:
                edges[state][dest] = [text]
        if state in fsm.finals:
            edges[state].setdefault(end, []).append("")
    regex = {p: {q: _union(parts) for q, parts in row.items()} for p, row in edges.items()}
    for state in sorted(live, key=lambda s: _degree(regex, s)):
        _eliminate(regex, state)
    return regex[start].get(end) or ""


def _live_states(fsm: FSM) -> set:
    reach, todo = {fsm.initial}, [fsm.initial]
    while todo:
        for dest in fsm.map.get(todo.pop(), {}).values():
            if dest not in reach:
                reach.add(dest)
                todo.append(dest)
    alive = set(fsm.finals) & reach
    changed = True
    while changed:
        changed = False
        for state in reach - alive:
            if any(d in alive for d in fsm.map.get(state, {}).values()):
                alive.add(state)
                changed = True
    return alive


def _degree(regex: dict, state) -> int:
    ins = sum(1 for p, row in regex.items() if state in row and p != state)
    return ins * len([q for q in regex[state] if q != state])


def _eliminate(regex: dict, k) -> None:
    loop = regex[k].pop(k, None)
    star = "" if not loop else f"{_group(loop)}*"
    outs = regex.pop(k)
    for p, row in regex.items():
        if k not in row:
            continue
        head = row.pop(k)
        for q, tail in outs.items():
            piece = _cat(head, star, tail)
            row[q] = _union([row[q], piece]) if q in row else piece
            if len(row[q]) > MAX_REGEX_CHARS:
                raise OverflowError("regex too large")


def _union(parts: list[str]) -> str:
    parts = list(dict.fromkeys(parts))
    if len(parts) == 1:
        return parts[0]
    if "" in parts:
        return f"{_group(_union([p for p in parts if p]))}?"
    return alt(parts) or ""


def _cat(*parts: str) -> str:
    return "".join(parts)  # every union is one atom already (alt), so pieces concatenate as they are


def _group(text: str) -> str:
    return text if is_atom(text) else f"(?:{text})"
