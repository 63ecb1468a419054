"""LALR(1) tables of a :class:`~lightllm_struct.grammar.parsing.cfg.Grammar`, built directly.

The LR(0) automaton, then DeRemer and Pennello's lookaheads (direct reads, reads, includes, lookback, each
closed with the digraph algorithm) with terminal sets as Python integers used as bit sets. This is the
construction lark's analyser makes, with the same augmentation (``$root: start``, END read after it), so
both accept the same grammars and build isomorphic automata; it only runs several times faster, because
items, symbols and sets are plain integers.
"""
from __future__ import annotations

from lightllm_struct.grammar.errors import GrammarConflictError, GrammarTooComplex
from lightllm_struct.grammar.parsing.cfg import Grammar
from lightllm_struct.grammar.parsing.lr import REDUCE, SHIFT, LRTables


def build_lalr(grammar: Grammar, *, strict: bool, max_states: int = 20_000) -> LRTables:
    """LALR(1) tables; a shift/reduce conflict resolves as shift unless ``strict``.

    Raises
    ------
    GrammarConflictError
        A reduce/reduce conflict, or (``strict``) a shift/reduce conflict.
    GrammarTooComplex
        More than ``max_states`` LR states.
    """
    return _Builder(grammar, max_states).tables(strict)


class _Builder:
    def __init__(self, grammar: Grammar, max_states: int) -> None:
        self.terminals = grammar.terminals
        n_terms = len(self.terminals) + 1  # END last
        self.end = n_terms - 1
        nonterms = list(dict.fromkeys([origin for origin, _ in grammar.rules]))
        self.nt_names = nonterms + ["$root"]
        sym = {t.name: i for i, t in enumerate(self.terminals)}
        sym.update({name: n_terms + i for i, name in enumerate(self.nt_names)})
        self.n_terms = n_terms
        self.rules = [(sym[o] - n_terms, tuple(sym[s] for s in exp)) for o, exp in grammar.rules]
        self.root_rule = len(self.rules)
        self.rules.append((len(nonterms), (sym[grammar.start],)))
        self.by_origin: list[list[int]] = [[] for _ in self.nt_names]
        for r, (origin, _exp) in enumerate(self.rules):
            self.by_origin[origin].append(r)
        self.max_states = max_states
        self._items()
        self._lr0()

    # -- LR(0) ------------------------------------------------------------------------------------
    def _items(self) -> None:
        """Items are integers: ``first[r] + dot``; ``nxt[item]`` is the symbol after the dot or -1."""
        self.first, self.item_rule, self.nxt = [], [], []
        for r, (_origin, exp) in enumerate(self.rules):
            self.first.append(len(self.nxt))
            for dot in range(len(exp) + 1):
                self.item_rule.append(r)
                self.nxt.append(exp[dot] if dot < len(exp) else -1)
        # the dot-0 items a nonterminal after a dot brings in, through every leftmost nonterminal
        n = self.n_terms
        left = [{self.rules[r][1][0] - n for r in rules if self.rules[r][1] and self.rules[r][1][0] >= n}
                for rules in self.by_origin]
        self.expand: list[tuple[int, ...]] = []
        for nt in range(len(self.nt_names)):
            seen, todo = {nt}, [nt]
            while todo:
                for m in left[todo.pop()]:
                    if m not in seen:
                        seen.add(m)
                        todo.append(m)
            self.expand.append(tuple(self.first[r] for m in sorted(seen) for r in self.by_origin[m]))

    def _lr0(self) -> None:
        n, nxt = self.n_terms, self.nxt
        start_kernel = (self.first[self.root_rule],)
        index = {start_kernel: 0}
        self.closures: list[list[int]] = []
        self.trans: list[dict[int, int]] = []
        kernels = [start_kernel]
        while len(self.closures) < len(kernels):
            kernel = kernels[len(self.closures)]
            closure = dict.fromkeys(kernel)
            for item in kernel:
                if nxt[item] >= n:
                    closure.update(dict.fromkeys(self.expand[nxt[item] - n]))
            groups: dict[int, list[int]] = {}
            for item in closure:
                s = nxt[item]
                if s >= 0:
                    groups.setdefault(s, []).append(item + 1)
            row = {}
            for s, items in groups.items():
                key = tuple(sorted(items))
                dest = index.get(key)
                if dest is None:
                    if len(kernels) >= self.max_states:
                        raise GrammarTooComplex(f"grammar has more than {self.max_states} LR states")
                    dest = index[key] = len(kernels)
                    kernels.append(key)
                row[s] = dest
            self.closures.append(list(closure))
            self.trans.append(row)

    # -- lookaheads (DeRemer & Pennello) ------------------------------------------------------------
    def _nullable(self) -> list[bool]:
        nullable = [False] * len(self.nt_names)
        n, changed = self.n_terms, True
        while changed:
            changed = False
            for origin, exp in self.rules:
                if not nullable[origin] and all(s >= n and nullable[s - n] for s in exp):
                    nullable[origin] = changed = True
        return nullable

    def _lookaheads(self) -> dict[tuple[int, int], int]:
        """(state, rule) -> bit set of the terminals on which the complete rule reduces there."""
        n, nullable = self.n_terms, self._nullable()
        transitions = [(p, s) for p, row in enumerate(self.trans) for s in row if s >= n]
        idx = {t: i for i, t in enumerate(transitions)}
        direct, reads = [0] * len(transitions), [[] for _ in transitions]
        for i, (p, a) in enumerate(transitions):
            r = self.trans[p][a]
            bits = 0
            for s, _dest in self.trans[r].items():
                if s < n:
                    bits |= 1 << s
                elif nullable[s - n]:
                    reads[i].append(idx[(r, s)])
            direct[i] = bits
        direct[idx[(0, self.rules[self.root_rule][1][0])]] |= 1 << self.end
        read_sets = _digraph(reads, direct)
        includes: list[list[int]] = [[] for _ in transitions]
        lookback: dict[tuple[int, int], list[int]] = {}
        by_origin: list[dict[int, list[int]] | None] = [None] * len(self.trans)
        for i, (p, b) in enumerate(transitions):
            if by_origin[p] is None:
                groups: dict[int, list[int]] = {}
                for item in self.closures[p]:
                    groups.setdefault(self.rules[self.item_rule[item]][0], []).append(item)
                by_origin[p] = groups
            # every item of b in p, kernel items too (as lark does: it keeps the two analyses equal)
            for item in by_origin[p].get(b - n, ()):
                r = self.item_rule[item]
                exp = self.rules[r][1]
                dot = item - self.first[r]
                state = p
                for k in range(dot, len(exp)):
                    s = exp[k]
                    if s >= n and all(t >= n and nullable[t - n] for t in exp[k + 1:]):
                        includes[idx[(state, s)]].append(i)
                    state = self.trans[state][s]
                if dot == 0:
                    lookback.setdefault((state, r), []).append(i)
        follow = _digraph(includes, read_sets)
        out: dict[tuple[int, int], int] = {}
        for key, sources in lookback.items():
            bits = 0
            for i in sources:
                bits |= follow[i]
            out[key] = bits
        return out

    def tables(self, strict: bool) -> LRTables:
        n = self.n_terms
        actions = [{s: (SHIFT, d) for s, d in row.items() if s < n} for row in self.trans]
        gotos = [{s - n: d for s, d in row.items() if s >= n} for row in self.trans]
        reduce_of: list[dict[int, int]] = [{} for _ in self.trans]
        for (state, r), bits in self._lookaheads().items():
            row, reduces = actions[state], reduce_of[state]
            while bits:
                low = bits & -bits
                t = low.bit_length() - 1
                bits ^= low
                if t in reduces:
                    raise GrammarConflictError(f"grammar is not LALR(1): Reduce/Reduce collision in {self._name(t)} between the "
                                               f"rules of {self.nt_names[self.rules[r][0]]} and "
                                               f"{self.nt_names[self.rules[reduces[t]][0]]}")
                reduces[t] = r
                if t in row:
                    if strict:
                        raise GrammarConflictError(f"grammar is not LALR(1): Shift/Reduce conflict for terminal {self._name(t)}. "
                                                   f"[strict-mode] (rule of {self.nt_names[self.rules[r][0]]})")
                    continue
                row[t] = (REDUCE, r)
        rules = tuple((origin, len(exp)) for origin, exp in self.rules)
        end_state = self.trans[0][self.rules[self.root_rule][1][0]]
        return LRTables(self.terminals, (), tuple(actions), tuple(gotos), rules, 0, end_state)

    def _name(self, t: int) -> str:
        return "$END" if t == self.end else self.terminals[t].name


def _digraph(edges: list[list[int]], base: list[int]) -> list[int]:
    """F(x) = base(x) | F(y) for every edge x -> y, closed over cycles (DeRemer and Pennello's digraph)."""
    done = 1 << 62
    out = list(base)
    depth = [0] * len(base)
    stack: list[int] = []
    for root in range(len(base)):
        if depth[root]:
            continue
        stack.append(root)
        depth[root] = len(stack)
        frames = [[root, len(stack), 0]]  # node, its depth on entry, next edge
        while frames:
            frame = frames[-1]
            x = frame[0]
            if frame[2] < len(edges[x]):
                y = edges[x][frame[2]]
                frame[2] += 1
                if depth[y] == 0:
                    stack.append(y)
                    depth[y] = len(stack)
                    frames.append([y, len(stack), 0])
                    continue
                depth[x] = min(depth[x], depth[y])
                out[x] |= out[y]
                continue
            frames.pop()
            if depth[x] == frame[1]:  # x roots a strongly connected component: all of it shares x's set
                while True:
                    top = stack.pop()
                    depth[top] = done
                    out[top] = out[x]
                    if top == x:
                        break
            if frames:
                parent = frames[-1][0]
                depth[parent] = min(depth[parent], depth[x])
                out[parent] |= out[x]
    return out
