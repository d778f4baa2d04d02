"""What a results file records of the machine it ran on, and how the docs pages name its CPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from memq_bench.results import _ISA, ResultsFile, cpu_info, cpu_words


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="reads /proc/cpuinfo")
def test_cpu_info_names_the_model_identity_and_instruction_sets_of_this_machine() -> None:
    block = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
    fields = dict((k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in block.splitlines()))
    flags = set((fields.get("flags") or fields.get("Features") or "").split())

    info = cpu_info()

    assert info["isa"] == [name for name in _ISA if name in flags]
    if "model name" in fields:
        assert info["cpu"] == fields["model name"]
    if "vendor_id" in fields:
        assert info["cpu_id"].split()[0] == fields["vendor_id"]
    # every results file carries it
    assert {"cpu", "cpu_id", "isa"} <= set(ResultsFile(benchmark="x").machine)


def test_cpu_words_reads_new_and_old_results_files() -> None:
    new = {"cpu": "AMD EPYC", "cpu_id": "AuthenticAMD 25 1 1", "isa": ["avx2", "fma"]}
    assert cpu_words(new) == " (AMD EPYC: AuthenticAMD 25 1 1; avx2, fma)"
    assert (
        cpu_words({**new, "isa": []})
        == " (AMD EPYC: AuthenticAMD 25 1 1; none of avx2, fma, f16c, avx512f, avx512_vnni)"
    )
    # files written before the CPU was recorded: the model the store benchmark kept, or nothing
    assert cpu_words({"processor": "Intel(R) Xeon(R) Processor"}) == " (Intel(R) Xeon(R) Processor)"
    assert cpu_words({"cpus": 2, "python": "3.11.7"}) == ""
