"""Product lexers are kept compact: narrow tables out of the product's growth buffers, and a pickled lexer
carries its component states rather than every state's signature (issue 11: a tool of 250 optional
parameters made a grammar of 300 MB in the process that loaded it)."""
from __future__ import annotations

import pickle

import numpy as np

from lightllm_struct.grammar import GrammarCompiler, Matcher
from lightllm_struct.grammar.lexing.lexer import UnionLexer, narrow
from tests.grammar.small_vocab import small_tokenizer

MANY_KEYS = {"type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(40)}}


def _widest(grammar) -> UnionLexer:
    lexers = [lex for lex in grammar._lexers.values() if type(lex) is UnionLexer]
    return max(lexers, key=lambda lex: lex.num_states)


def test_narrow_picks_int16_when_values_fit_and_copies():
    buffer = np.arange(-1, 99, dtype=np.int32).reshape(10, 10)
    small = narrow(buffer[:4])
    assert small.dtype == np.int16 and small.base is None and small.tolist() == buffer[:4].tolist()
    wide = narrow(np.array([[-1, 1 << 15]], dtype=np.int32))
    assert wide.dtype == np.int32 and wide.tolist() == [[-1, 1 << 15]]


def test_product_lexers_own_narrow_tables():
    grammar = GrammarCompiler(small_tokenizer()).compile_json_schema(MANY_KEYS)
    lexer = _widest(grammar)
    assert lexer.num_states > 40
    assert lexer.table.dtype == np.int16 and lexer.table.base is None  # not a view of a doubled buffer
    comps = lexer.signature._owner.comps
    assert comps.dtype == np.int16 and comps.base is None
    assert lexer.rows[1].tolist() == lexer.table[1].tolist()  # int rows read from the narrow table


def test_pickled_lexer_keeps_its_signature_lazy_and_equal():
    grammar = GrammarCompiler(small_tokenizer()).compile_json_schema(MANY_KEYS)
    lexer = _widest(grammar)
    data = pickle.dumps(lexer, protocol=pickle.HIGHEST_PROTOCOL)
    loaded = pickle.loads(data)
    assert dict.__len__(loaded.signature) == 0  # nothing made before it is read
    n = lexer.num_states
    assert loaded.num_states == n and loaded.accept_list == lexer.accept_list
    for q in range(n):
        assert loaded.signature[q] == lexer.signature[q]
        assert loaded.alive_terms[q] == lexer.alive_terms[q]
        assert list(loaded.rows[q]) == list(lexer.rows[q])
        assert loaded.has_out[q] == lexer.has_out[q]


def test_a_loaded_grammar_walks_like_the_compiled_one():
    from lightllm_struct.engine.compile_worker import dump_grammar, load_grammar

    tok = small_tokenizer()
    grammar = GrammarCompiler(tok).compile_json_schema(MANY_KEYS)
    loaded = load_grammar(dump_grammar(grammar, tok), tok)
    text = b'{"p3":1,"p17":-20,"p39":7}'
    ours, theirs = Matcher(grammar), Matcher(loaded)
    for byte in text:
        assert ours.allowed_token_ids() == theirs.allowed_token_ids()
        assert ours.accept_bytes(bytes([byte])) and theirs.accept_bytes(bytes([byte]))
    assert ours.is_complete() and theirs.is_complete()


def test_the_process_wide_dfa_and_table_caches_are_bounded_in_bytes(monkeypatch):
    from lightllm_struct.grammar.lexing import dfa_cache
    from lightllm_struct.grammar.parsing import lr

    dfa = dfa_cache.terminal_dfa("[a-z]{1,12}", None, max_states=1000)
    assert dfa_cache.dfa_nbytes(dfa) >= dfa.table.nbytes
    monkeypatch.setattr(dfa_cache._CACHE, "max_bytes", 3 * dfa_cache.dfa_nbytes(dfa))
    for n in range(13, 23):  # ten DFAs of about the same size
        dfa_cache.terminal_dfa(f"[a-z]{{1,{n}}}", None, max_states=1000)
    assert dfa_cache._CACHE.nbytes <= dfa_cache._CACHE.max_bytes and len(dfa_cache._CACHE) <= 4
    text = 'start: "a" b*\nb: "b" | "c"'
    tables = lr.build_lr_tables(text)
    size = lr._tables_nbytes((tables, 0))
    monkeypatch.setattr(lr._TABLES, "max_bytes", size)
    lr.remember_tables(text, tables, 0)
    assert size > 0 and text in lr._TABLES
    other = 'start: "x" y*\ny: "y" | "z" | "w"'
    lr.remember_tables(other, lr.build_lr_tables(other), 0)  # together over the bound: the older tables go
    assert text not in lr._TABLES and lr._TABLES.nbytes <= size


def test_every_scanner_reads_narrow_tables_of_many_states_alike():
    schema = {"type": "object", "properties": {f"key{i}": {"type": "integer"} for i in range(80)}}
    tok = small_tokenizer()
    grammars = [GrammarCompiler(tok, scanner=s).compile_json_schema(schema) for s in ("trie", "matrix", "trie_numpy")]
    assert _widest(grammars[0]).num_states > 200 and _widest(grammars[0]).table.dtype == np.int16
    matchers = [Matcher(g) for g in grammars]
    for byte in b'{"key12":-1,"key79":5}':
        masks = [m.allowed_token_ids() for m in matchers]
        assert masks[0] == masks[1] == masks[2]
        assert all(m.accept_bytes(bytes([byte])) for m in matchers)
