"""What memq reads of the CPU (memq._cpu), and the int8 embedder's warning on a CPU without an 8-bit
dot-product instruction."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from memq import _cpu
from memq.embed.onnx import OnnxMiniLMEmbedder


def _fields(monkeypatch: pytest.MonkeyPatch, fields: dict[str, str] | None) -> None:
    monkeypatch.setattr(_cpu, "first_processor", lambda: fields)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"flags": "fpu sse avx2 fma f16c"}, False),  # AVX2 only (the AMD EPYC this suite ran on)
        ({"flags": "avx2 avx512f avx512_vnni"}, True),
        ({"flags": "avx2 avx_vnni"}, True),
        ({"Features": "fp asimd evtstrm asimddp"}, True),  # Arm with the dot-product extension
        ({"Features": "fp asimd"}, False),
        ({"model name": "no flags line"}, None),
        (None, None),  # no /proc/cpuinfo
    ],
)
def test_int8_dot_product_from_the_flags(
    monkeypatch: pytest.MonkeyPatch, fields: dict[str, str] | None, expected: bool | None
) -> None:
    _fields(monkeypatch, fields)
    assert _cpu.int8_dot_product() is expected


@pytest.mark.skipif(not Path(_cpu.CPUINFO).exists(), reason="reads /proc/cpuinfo")
def test_first_processor_reads_the_first_block() -> None:
    text = Path(_cpu.CPUINFO).read_text(errors="replace").strip().split("\n\n")[0]
    first = dict((k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in text.splitlines()))
    assert _cpu.first_processor() == first


@pytest.mark.parametrize(
    ("precision", "flags", "warns"),
    [("int8", "avx2 fma", True), ("int8", "avx2 avx512_vnni", False), ("fp32", "avx2 fma", False)],
)
def test_int8_embedder_warns_on_a_cpu_without_vnni(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, precision: str, flags: str, warns: bool
) -> None:
    _fields(monkeypatch, {"flags": flags})
    embedder = OnnxMiniLMEmbedder(precision)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="memq.embed.onnx"):
        vector = embedder.embed_query("where did Caroline go hiking?")
    assert vector.shape == (384,)  # the warning does not stop the embedder
    said = [r.getMessage() for r in caplog.records if r.name == "memq.embed.onnx"]
    assert bool(said) is warns
    if warns:
        assert "without an 8-bit dot-product instruction" in said[0] and "The CPU decides" in said[0]
