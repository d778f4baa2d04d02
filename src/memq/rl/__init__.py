"""Write policies trained by reinforcement learning (Memory-R1, Mem-α style), in numpy on the CPU.

* :mod:`memq.rl.features`, :mod:`memq.rl.actions`, :mod:`memq.rl.policy` — what a policy sees, the
  op set it picks from, and the policy itself (numpy only; the ``learned:PATH`` manager uses these);
* :mod:`memq.rl.env` — a gymnasium environment over a real store (``memq[rl]``), rewarded by
  :mod:`memq.rl.metrics` (MemoryAgentBench's substring exact match, shared with the benchmarks);
* :mod:`memq.rl.grpo` — the group-relative policy-gradient trainer;
* :mod:`memq.rl.export` — the same episodes as prompt / completion / reward records for TRL's GRPO
  trainer (``memq[rl-export]``).

Docs: docs/rl.md. Nothing heavy is imported here: import the submodule you need.
"""
