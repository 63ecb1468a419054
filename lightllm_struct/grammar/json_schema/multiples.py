"""``multipleOf`` as a finite automaton over the decimal digits of a JSON number.

A step ``p / 10**d`` (p an integer: 3, 0.01 = 1/10**2, 1.5 = 15/10**1) divides a value v exactly when
``v * 10**d`` is an integer divisible by p. Reading the digits left to right keeps the remainder mod p of the
digits read so far; k fraction digits read, the value times 10**d is that number times 10**(d-k), so the end
state says whether p divides it. Past d fraction digits only zeros keep the value a multiple. The caller
intersects the automaton with the bounds' regex. Exponents are not produced (a
sound restriction: ``1e2`` is written ``100``).
"""
from __future__ import annotations

from decimal import Decimal

from interegular.fsm import FSM, Alphabet

MAX_STEP_DIGITS = 400  # p * (d + 2) automaton states at most; beyond, the regex would be far too large

_DIGITS = "0123456789"


def step_parts(step: int | float) -> tuple[int, int] | None:
    """(p, d) with step == p / 10**d, or None for a step with no short decimal form."""
    dec = Decimal(repr(step)) if isinstance(step, float) else Decimal(step)
    sign, digits, exp = dec.normalize().as_tuple()
    if not isinstance(exp, int) or sign:
        return None
    p = int("".join(map(str, digits)))
    return (p * 10 ** exp, 0) if exp >= 0 else (p, -exp)


def multiple_fsm(p: int, d: int) -> FSM:
    """The automaton of JSON numbers (no exponent) that are multiples of ``p / 10**d``.

    Raises OverflowError when it would be too large.
    """
    if p * (d + 2) > MAX_STEP_DIGITS:
        raise OverflowError(f"multipleOf needs {p * (d + 2)} automaton states")
    # states: 0 start, 1 after "-", 2 after a leading "0"; ("i", r) integer digits; ("f", r, k) k fraction
    # digits (k = 0: just after "."); ("z", ok) past d fraction digits, zeros only
    names: dict = {}

    def sid(key) -> int:
        return names.setdefault(key, len(names))

    start, neg, zero = sid("start"), sid("neg"), sid("zero")
    table: dict[int, dict[str, int]] = {}

    def edge(a: int, ch: str, b: int) -> None:
        table.setdefault(a, {})[ch] = b

    for head in (start, neg):
        edge(head, "0", zero)
        for ch in _DIGITS[1:]:
            edge(head, ch, sid(("i", int(ch) % p)))
    edge(start, "-", neg)
    finals = {zero}  # 0 is a multiple of every step
    edge(zero, ".", sid(("f", 0, 0)))
    for r in range(p):
        state = sid(("i", r))
        for ch in _DIGITS:
            edge(state, ch, sid(("i", (10 * r + int(ch)) % p)))
        edge(state, ".", sid(("f", r, 0)))
        if r * 10 ** d % p == 0:
            finals.add(state)
        for k in range(d + 1):
            state = sid(("f", r, k))
            for ch in _DIGITS:
                nxt = sid(("f", (10 * r + int(ch)) % p, k + 1)) if k < d else sid(("z", r == 0)) if ch == "0" else None
                if nxt is not None:
                    edge(state, ch, nxt)
            if k > 0 and r * 10 ** (d - k) % p == 0:
                finals.add(state)
    ok = sid(("z", True))
    edge(ok, "0", ok)
    finals.add(ok)
    alphabet = Alphabet.from_groups(*[[ch] for ch in _DIGITS + "-."])
    key = {ch: alphabet[ch] for ch in _DIGITS + "-."}
    fsm_map = {s: {key[ch]: t for ch, t in table.get(s, {}).items()} for s in range(len(names))}
    return FSM(alphabet, set(range(len(names))), start, finals, fsm_map).reduce()
