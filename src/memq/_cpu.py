"""What the CPU offers, read from ``/proc/cpuinfo`` (Linux; elsewhere nothing is known).

memq asks one question of it at run time: whether 8-bit dot products have their own instruction
(VNNI on x86, the dot-product extension on Arm). Without one, ONNX Runtime's int8 matrix products are
slower than its fp32 ones, so ``minilm-int8`` says so when it loads (docs/benchmarks-embedders.md,
"The CPU decides"). The benchmarks record the same fields (``memq_bench.results.cpu_info``).
"""

from __future__ import annotations

from functools import cache

CPUINFO = "/proc/cpuinfo"


@cache
def first_processor() -> dict[str, str] | None:
    """The fields of the first processor's block of ``/proc/cpuinfo`` (they describe every core of
    the machines memq runs on); None when the file cannot be read."""
    fields: dict[str, str] = {}
    try:
        with open(CPUINFO, encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    if fields:
                        break  # the end of the first block
                    continue
                name, _, value = line.partition(":")
                fields.setdefault(name.strip(), value.strip())
    except OSError:
        return None
    return fields


def flags() -> frozenset[str] | None:
    """The CPU's feature flags (x86 ``flags``, Arm ``Features``); None when unknown."""
    fields = first_processor()
    if fields is None:
        return None
    line = fields.get("flags", fields.get("Features"))
    return None if line is None else frozenset(line.split())


def int8_dot_product() -> bool | None:
    """Whether the CPU multiplies 8-bit vectors in one instruction: AVX-512 VNNI or AVX-VNNI on x86,
    the dot-product extension (``asimddp``) on Arm. None when the flags are unknown."""
    have = flags()
    if have is None:
        return None
    return bool(have & {"avx512_vnni", "avx_vnni", "asimddp"})
