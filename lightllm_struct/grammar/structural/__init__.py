"""Structural tags: one grammar for a whole assistant turn, and the regions of its output.

A turn is free text, optionally a reasoning section first, then free text or tool calls whose opening
marker triggers a fully constrained region (``turn.py``). Every terminal of the grammar is tagged with the
region it spells (content, reasoning, a call's start, its arguments, a bare marker), so that a walk of the
compiled grammar over the output splits it into those regions (``regions.py``): a stream is the same walk
fed token by token, and always agrees with the finished message.
"""
from lightllm_struct.grammar.structural.regions import Piece, Region, RegionTracker
from lightllm_struct.grammar.structural.turn import CallSpec, Reasoning, TurnGrammar, TurnSpec, turn_grammar

__all__ = ["CallSpec", "Piece", "Reasoning", "Region", "RegionTracker", "TurnGrammar", "TurnSpec", "turn_grammar"]
