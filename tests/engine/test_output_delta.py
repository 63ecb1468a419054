"""Output deltas across the engine pipe rebuild exactly the snapshots the engine made."""
from __future__ import annotations

import pickle

from lightllm_struct.engine.output_delta import DeltaDecoder, DeltaEncoder
from lightllm_struct.request import RequestOutput


def _out(rid: str, tokens: list[int], text: str, *, finished: bool = False, logprobs=None) -> RequestOutput:
    return RequestOutput(request_id=rid, prompt="p", prompt_token_ids=[7, 8, 9], text=text, token_ids=tokens,
                         finished=finished, finish_reason="stop" if finished else None, num_prompt_tokens=3,
                         num_output_tokens=len(tokens), logprobs=logprobs, stop_reason="}" if finished else None)


def test_deltas_rebuild_every_snapshot():
    snapshots = [_out("a", [1], "x"), _out("b", [5], "q", logprobs=[-0.5]), _out("a", [1, 2], "xy"),
                 _out("b", [5, 6], "qr", logprobs=[-0.5, -1.0]),
                 _out("a", [1, 2, 3], "xZ"),  # a text that does not extend the last one is sent whole
                 _out("a", [1, 2, 3, 4], "xZw", finished=True), _out("b", [5, 6, 7], "qrs", finished=True),
                 _out("a", [9], "new")]  # the id comes back as a new request
    encoder, decoder = DeltaEncoder(), DeltaDecoder()
    deltas = [pickle.loads(pickle.dumps(encoder.encode(s))) for s in snapshots]
    assert [decoder.decode(d) for d in deltas] == snapshots
    assert deltas[2][1] is None and deltas[2][2][0] == [2] and deltas[2][3] == (True, "y")  # a tail only
    assert deltas[4][3] == (False, "xZ")
    assert deltas[7][1] is not None  # prompt fields again for the new request
