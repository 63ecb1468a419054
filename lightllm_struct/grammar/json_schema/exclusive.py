"""``oneOf`` whose branches may overlap, enforced exactly: "exactly one" as a union of disjoint pieces.

``oneOf [B1, ..., Bn]`` holds exactly when some ``Bi`` holds and no other does, so it is the anyOf of
``Bi ∧ ¬(B1 ∨ ... ∨ Bi-1 ∨ Bi+1 ∨ ... ∨ Bn)``, each complement written as positive schemas by negation.py.
The pieces of different ``i`` are disjoint by construction (and those of one ``i`` too, see negation.py), so
the union needs no further exclusivity check; whether one LALR(1) table can parse it is checked as for any
union. A branch whose complement has no exact form refuses the oneOf by the pointer of that keyword.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lightllm_struct.grammar.errors import UnsupportedSchemaFeature
from lightllm_struct.grammar.json_schema.combinators import MAX_BRANCHES, Unsatisfiable
from lightllm_struct.grammar.json_schema.negation import Flatten, Negator


def exclusive_branches(branches: list, rest: dict, flatten: Flatten, *, assert_formats: bool,
                       ptr: str) -> list[Any]:
    """anyOf branches (schemas) whose union is exactly ``oneOf: branches`` under ``rest``.

    Raises
    ------
    UnsupportedSchemaFeature : a branch with no exact complement here, or too many pieces.
    """
    return _disjoint_pieces(branches, rest, flatten, assert_formats=assert_formats, ptr=ptr,
                            excluded=lambda i: [j for j in range(len(branches)) if j != i],
                            too_many="oneOf: exactly-one needs too many pieces")


def first_match_branches(branches: list, rest: dict, flatten: Flatten, *, assert_formats: bool,
                         ptr: str) -> list[Any]:
    """anyOf branches (schemas), pairwise disjoint, whose union is exactly ``anyOf: branches`` under ``rest``:
    ``B1``, ``B2 ∧ ¬B1``, ``B3 ∧ ¬B1 ∧ ¬B2``, ... (an instance goes to the first branch it satisfies). Two
    alternatives that overlap may meet in one parser state with terminals that match the same text; disjoint
    ones meet less often (the converter tries this form when the plain union is not LALR(1)).

    Raises
    ------
    UnsupportedSchemaFeature : a branch with no exact complement here, or too many pieces.
    """
    return _disjoint_pieces(branches, rest, flatten, assert_formats=assert_formats, ptr=ptr,
                            excluded=lambda i: list(range(i)), too_many="anyOf: disjoint alternatives too many")


def _disjoint_pieces(branches: list, rest: dict, flatten: Flatten, *, assert_formats: bool, ptr: str,
                     excluded: Callable[[int], list[int]], too_many: str) -> list[Any]:
    """``Bi ∧ ¬(B_j for j in excluded(i))`` for every satisfiable branch ``i``, as schemas."""
    negator = Negator(flatten, assert_formats=assert_formats)
    out: list[Any] = []
    for i, branch in enumerate(branches):
        if branch is False:
            continue
        try:
            within = flatten({"allOf": [rest, branch]} if rest else branch, f"{ptr}/{i}")
        except Unsatisfiable:
            continue  # this branch accepts nothing under rest
        except UnsupportedSchemaFeature:
            within = None
        others = excluded(i)
        for piece in negator.none_of([branches[j] for j in others], ptr, within=within, indices=others):
            out.append(branch if piece == {} else {"allOf": [branch, piece]})
        if len(out) > MAX_BRANCHES:
            raise UnsupportedSchemaFeature(too_many, pointer=ptr)
    return out
