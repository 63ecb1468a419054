"""Tensor parallelism over ``torch.distributed`` (NCCL on GPUs, gloo on the CPU).

Data flow: rank 0 is the engine (scheduler, tokenizer, grammar masks, sampler). Each step its
``TensorParallelModel`` (tp_model.py) broadcasts the model inputs through a ``StepChannel`` (channel.py);
ranks > 0 run ``serve_steps`` (worker.py) with a ``ShardHandler`` (shard.py) over their shard of the model
and their own KV cache, joining every all-reduce and the LM head's gather. Processes are started by
``launch_ranks`` (spawn, rendezvous on 127.0.0.1) or by torchrun (launcher.py); groups are built in
group.py; a dead or hung rank becomes a ``RankFailure`` and, for a server, a bounded exit (health.py).
"""
