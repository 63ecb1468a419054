"""The grammar engine: constraints -> LR tables -> deterministic pushdown automata -> token bitmasks.

>>> tok = TokenizerInfo.from_vocab(vocab, eos_token_ids=[eos])
>>> grammar = GrammarCompiler(tok).compile_json_schema(schema)
>>> matcher = Matcher(grammar)
>>> mask = allocate_token_bitmask(1, tok.vocab_size)
>>> matcher.fill_next_token_bitmask(mask, 0); matcher.accept_token(token_id)
"""
from lightllm_struct.grammar.bitmask import allocate_token_bitmask, apply_token_bitmask_inplace
from lightllm_struct.grammar.compiled import CompiledGrammar
from lightllm_struct.grammar.compiler import GrammarCompiler
from lightllm_struct.grammar.matcher import Matcher
from lightllm_struct.grammar.vocab.tokenizer_info import TokenizerInfo

__all__ = [
    "CompiledGrammar",
    "GrammarCompiler",
    "Matcher",
    "TokenizerInfo",
    "allocate_token_bitmask",
    "apply_token_bitmask_inplace",
]
