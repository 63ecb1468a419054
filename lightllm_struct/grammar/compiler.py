"""GrammarCompiler: Lark grammars, regexes, choices and JSON schemas -> CompiledGrammar."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lightllm_struct.grammar.lexing.byte_dfa import ByteDFA
from lightllm_struct.grammar.lexing.dfa_cache import terminal_dfa
from lightllm_struct.grammar.lexing.finite_dfa import finite_dfa
from lightllm_struct.grammar.lexing.jit_warm import warm_lexing_jit
from lightllm_struct.grammar.compiled import CompiledGrammar
from lightllm_struct.grammar.deadline import Deadline, compiling_within
from lightllm_struct.grammar.errors import GrammarSyntaxError, GrammarTooComplex, RegexError
from lightllm_struct.grammar.lexing.lazy_dfa import LazyDFA
from lightllm_struct.grammar.parsing.lr import REDUCE, SHIFT, LRTables, Terminal, build_lr_tables
from lightllm_struct.grammar.masks.token_mask import SCANNERS, scan_cache_for
from lightllm_struct.grammar.vocab.tokenizer_info import TokenizerInfo


class GrammarCompiler:
    """Compiles constraints for one vocabulary.

    Parameters
    ----------
    tokenizer:
        The vocabulary every compiled grammar is specialised to.
    compile_timeout_s:
        Deadline of one compilation (checked cooperatively); ``None`` for none.
    max_dfa_states:
        Limit on the states of one terminal's DFA and of one product lexer. Terminals with a counted
        repeat of 256 or more (``maxLength: 2000``) get lazily built DFAs instead, which may make up to
        4x that many states while generating (only those a generation reaches); states within 16 bytes
        of their start are made at compile time, and over a quarter of the limit there is refused.
    max_lr_states, max_rules:
        Limits on the LR automaton.
    max_stack_depth:
        Parser stack bound; tokens that would exceed it are not allowed (nesting cannot run away).
    mask_cache_size:
        Masks cached per compiled grammar (LRU).
    scanner:
        How token masks scan the vocabulary: ``"trie"`` (token trie, default, faster) or ``"matrix"``.
    """

    def __init__(self, tokenizer: TokenizerInfo, *, compile_timeout_s: float | None = 10.0,
                 max_dfa_states: int = 20_000, max_lr_states: int = 20_000, max_rules: int = 20_000,
                 max_stack_depth: int = 1024, mask_cache_size: int = 4096, scanner: str = "trie") -> None:
        if scanner not in SCANNERS:
            raise ValueError(f"scanner must be one of {SCANNERS}, not {scanner!r}")
        self.tokenizer = tokenizer
        self.compile_timeout_s = compile_timeout_s
        self.max_dfa_states = max_dfa_states
        self.max_lr_states = max_lr_states
        self.max_rules = max_rules
        self.max_stack_depth = max_stack_depth
        self.mask_cache_size = mask_cache_size
        self.scanner = scanner
        # one-time set-up per vocabulary (token trie, compiled scan walks) and per process (the lexer
        # builders' numba code) here, outside compile deadlines
        scan_cache_for(tokenizer, scanner)
        warm_lexing_jit()

    def compile_lark(self, text: str) -> CompiledGrammar:
        """Compile a Lark grammar whose start rule is ``start``.

        Raises
        ------
        GrammarSyntaxError, GrammarConflictError, RegexError, GrammarTooComplex, CompileTimeout
        """
        return self._compile_lark(text, Deadline(self.compile_timeout_s))

    def _compile_lark(self, text: str, deadline: Deadline) -> CompiledGrammar:
        try:
            lr = build_lr_tables(text, max_states=self.max_lr_states, max_rules=self.max_rules)
            deadline.check()
            dfas = [self._terminal_dfa(t, deadline) for t in lr.terminals]
            return self._finish(lr, dfas, deadline, text)
        except RecursionError as exc:
            raise GrammarTooComplex("grammar nests too deeply to compile") from exc

    def compile_regex(self, pattern: str) -> CompiledGrammar:
        """Compile a regex; the output must match it entirely (``re.fullmatch`` semantics).

        Raises
        ------
        RegexError, GrammarTooComplex, CompileTimeout
        """
        deadline = Deadline(self.compile_timeout_s)
        dfa = self._regex_dfa(pattern, deadline)
        return self._single_terminal(Terminal("REGEX", pattern, None, 0, 0), dfa, deadline, pattern)

    def compile_choice(self, choices: Sequence[str]) -> CompiledGrammar:
        """Compile a choice among literal strings (the output is exactly one of them).

        Raises
        ------
        GrammarSyntaxError
            ``choices`` is empty or holds a non-string.
        """
        if isinstance(choices, str) or not choices or not all(isinstance(c, str) for c in choices):
            raise GrammarSyntaxError("compile_choice needs a non-empty list of strings")
        deadline = Deadline(self.compile_timeout_s)
        # no state limit, as before: a choice list is as big as the user sends (the request size bounds it)
        dfa = finite_dfa([c.encode("utf-8") for c in choices], max_states=1 << 62, deadline=deadline)
        return self._single_terminal(Terminal("CHOICE", "", None, 0, 0), dfa, deadline, repr(list(choices)))

    def compile_json_schema(self, schema: dict | str | bool, *, whitespace: str = "compact",
                            literal_escapes: str = "canonical", assert_formats: bool = True,
                            draft: str | None = None, strict: bool = False,
                            documents: dict[str, Any] | None = None, unsupported: str = "refuse") -> CompiledGrammar:
        """Compile a JSON schema.

        Parameters
        ----------
        whitespace:
            "compact" (none) or "flexible" (bounded whitespace around punctuation).
        literal_escapes:
            How declared property names and ``const``/``enum`` strings may be spelled: "canonical" (their
            ``json.dumps`` spellings with and without ``ensure_ascii``: one for ASCII text, which the grammar
            then forces) or "any" (every JSON escape). Other strings take every spelling either way.
        assert_formats:
            Enforce ``format`` (date-time, email, uuid, ...), or treat it as an annotation the way draft
            2020-12 does by default (any string).
        draft, strict:
            The draft of a schema without ``$schema``, and whether unknown keywords are refused (see
            ``json_schema_to_lark``).
        documents:
            Preloaded schema documents by URI: where a ``$ref`` outside the schema may lead (nothing is fetched).
        unsupported:
            "refuse" (default) raises on a keyword that cannot be enforced; "report" (opt-in) compiles without
            it and lists its JSON pointer in the grammar's ``unsupported`` attribute.

        Raises
        ------
        SchemaError, UnsupportedSchemaFeature
            From the schema front end, with a JSON pointer.
        GrammarTooComplex, CompileTimeout
        """
        from lightllm_struct.grammar.json_schema import convert_json_schema

        # one deadline for the frontend (its grammar check builds the terminal DFAs) and the compile
        with compiling_within(Deadline(self.compile_timeout_s)) as deadline:
            try:
                conversion = convert_json_schema(schema, whitespace=whitespace, literal_escapes=literal_escapes,
                                                 assert_formats=assert_formats, draft=draft, strict=strict,
                                                 documents=documents, unsupported=unsupported)
            except RecursionError:  # the converter walks subschemas recursively; thousands of levels end here
                raise GrammarTooComplex("the schema nests too deeply to compile") from None
            grammar = self._compile_lark(conversion.text, deadline)
        grammar.unsupported = conversion.unsupported
        return grammar

    def compile_json_object(self) -> CompiledGrammar:
        """Any JSON object (``response_format={"type": "json_object"}``)."""
        return self.compile_json_schema({"type": "object"})

    # -- internals --------------------------------------------------------------------------------
    def _terminal_dfa(self, term: Terminal, deadline: Deadline) -> ByteDFA | LazyDFA:
        try:
            return terminal_dfa(term.pattern, term.literal, max_states=self.max_dfa_states, deadline=deadline)
        except RegexError as exc:
            raise RegexError(f"terminal {term.name}: {exc.message}") from exc

    def _regex_dfa(self, pattern: str, deadline: Deadline) -> ByteDFA | LazyDFA:
        return terminal_dfa(pattern, None, max_states=self.max_dfa_states, deadline=deadline)

    def _single_terminal(self, term: Terminal, dfa: ByteDFA | LazyDFA, deadline: Deadline,
                         source: str) -> CompiledGrammar:
        # start: TERM (| empty when the language holds ""): states 0 -TERM-> 1, goto(0, start) = 2 = end.
        actions: list[dict] = [{0: (SHIFT, 1)}, {1: (REDUCE, 0)}, {}]
        rules = [(0, 1)]
        if dfa.fullmatch(b""):
            actions[0][1] = (REDUCE, 1)
            rules.append((0, 0))
        lr = LRTables((term,), (), tuple(actions), ({0: 2}, {}, {}), tuple(rules), 0, 2)
        return self._finish(lr, [dfa], deadline, source)

    def _finish(self, lr: LRTables, dfas: list[ByteDFA], deadline: Deadline, source: str) -> CompiledGrammar:
        # Product lexers of every state's full terminal set bound all the subsets built at run time
        # (a subset's reachable product is a projection), so the size limit is enforced here, once.
        grammar = CompiledGrammar(self.tokenizer, lr, dfas, max_stack_depth=self.max_stack_depth,
                                  max_lexer_states=self.max_dfa_states, mask_cache_size=self.mask_cache_size,
                                  source=source, scanner=self.scanner)
        for row in lr.actions:
            deadline.check()
            grammar.union_lexer(frozenset(t for t in row if t != lr.end) | frozenset(lr.ignore), deadline)
        return grammar
