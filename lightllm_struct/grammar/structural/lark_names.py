"""Renaming the rules and terminals of a Lark grammar, so that several grammars embed into one."""
from __future__ import annotations

import re

_LARK_TOKEN = re.compile(
    r'(?P<str>"(?:\\.|[^"\\\n])*"i?)'
    r"|(?P<comment>//[^\n]*)"
    r"|(?P<regex>/(?!/)(?:\\.|[^/\\\n])+/[imslux]*)"
    r"|(?P<directive>%[a-z]+)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<other>[\s\S])"
)


def prefix_lark_names(text: str, prefix: str) -> str:
    """Rename every rule and terminal of a Lark grammar by prefixing it, leaving literals untouched.

    Rules are lower-case and terminals upper-case in Lark, so the prefix keeps that case (and a leading
    ``_``/``?`` marker, which changes tree shaping, stays in front).
    """
    out = []
    for m in _LARK_TOKEN.finditer(text):
        name = m.group("name")
        if name is None:
            out.append(m.group(0))
            continue
        lead = name[: len(name) - len(name.lstrip("_"))]
        body = name[len(lead):]
        tag = prefix.upper() if body[:1].isupper() else prefix.lower()
        out.append(f"{lead}{tag}{body}")
    return "".join(out)
