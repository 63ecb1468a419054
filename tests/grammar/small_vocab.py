"""A small vocabulary for fast grammar tests.

All 256 single bytes (so any byte string can be spelt) plus a few hundred multi-byte tokens chosen to
stress the engine: tokens crossing terminal boundaries (``":``, ``"},{"``, ``}]``), tokens splitting
UTF-8 characters, whole keywords and words. Id 0 is EOS, id 1 a special (control) token.
"""
from __future__ import annotations

from functools import lru_cache

EOS_ID = 0
SPECIAL_ID = 1

_PIECES = [
    '":', '":"', '","', '",', '"}', '"},', '"},{"', '"}]', '}]', '}}', ']}', '],', '},', '{"', '["', '[{',
    '[{"', '[]', '{}', '":{', '":[', '":[{"', '": ', ', "', '" ', ' "', '\\"', '\\n', '\\u', '\\\\',
    'true', 'false', 'null', 'tru', 'fals', 'nul', 'e,', 'e}', 'l}', 'true}', 'null]', 'true,',
    '0', '00', '12', '123', '-1', '1.', '.5', '0.', 'e+', 'E-', '1e', '99}', '1,', '2]', '3,"',
    'name', 'age', 'id', 'value', 'key', 'items', 'type', 'the', 'hello', 'world', 'abc', 'xyz', 'foo',
    'bar', 'ab', 'ba', 'aa', 'bb', 'cd', 'a b', ' a', ' the', ' hello', '  ', '   ', '\n', '\n ', ' \n',
    '\t', 'select', 'SELECT', ' FROM', 'from', ' WHERE', ' *', '+', '*', '(', ')', '()', '(1', '1)', '+1',
    '1+', ')*', '2*(', 'if', 'else', 'yes', 'no', 'maybe', 'red', 'green', 'blue', 'redgreen', 'gre',
    '"red"', '"name"', '"age":', '"id":', 'é', 'ü', '中', '中文', '😀', 'aé', 'é"',
]


def _split_utf8_pieces() -> list[bytes]:
    """Tokens that start or end in the middle of a UTF-8 character, as byte-level BPE makes them."""
    out = []
    for text in ["é", "ü", "中", "文", "😀", "ß"]:
        data = text.encode("utf-8")
        for i in range(1, len(data)):
            out += [data[:i], data[i:], b'"' + data[:i], data[i:] + b'"']
    return out


@lru_cache(maxsize=1)
def small_vocab() -> list[bytes]:
    vocab: list[bytes] = [b"</s>", b"<|tool|>"]
    seen = set()
    for piece in [bytes([b]) for b in range(256)] + [p.encode("utf-8") for p in _PIECES] + _split_utf8_pieces():
        if piece not in seen:
            seen.add(piece)
            vocab.append(piece)
    return vocab


@lru_cache(maxsize=1)
def small_tokenizer():
    from lightllm_struct.grammar import TokenizerInfo

    return TokenizerInfo.from_vocab(small_vocab(), eos_token_ids=[EOS_ID], special_token_ids=[SPECIAL_ID])
