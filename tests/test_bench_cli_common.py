"""The benchmark commands' shared option parsing (memq_bench.cli_common) and metric selections
(memq_bench.view): what each accepts, and the usage error (exit 2, naming the option) otherwise."""

from __future__ import annotations

import pytest
import typer

from memq_bench.cli_common import choices, positive_ints, split, system_names
from memq_bench.results import NO_HOOKS, BenchResult, ResultsFile, RunHooks
from memq_bench.view import quality_metrics, slice_order


def test_split_drops_blanks_and_spaces() -> None:
    assert split(" a, b ,,c ,") == ["a", "b", "c"]
    assert split(" , ") == []


def test_positive_ints_are_sorted_and_distinct() -> None:
    assert positive_ints("10,5, 10,1", "--k") == [1, 5, 10]


@pytest.mark.parametrize("text", ["", "0,5", "-1", "five", "5,x"])
def test_positive_ints_reject_with_the_option_named(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as exc:
        positive_ints(text, "--k")
    assert exc.value.exit_code == 2
    assert "--k takes positive integers" in capsys.readouterr().out


def test_choices_keep_order_and_name_the_allowed_values(capsys: pytest.CaptureFixture[str]) -> None:
    assert choices("always, guarded", ("guarded", "always"), "--promotion") == ["always", "guarded"]
    with pytest.raises(typer.Exit):
        choices("sometimes", ("guarded", "always"), "--promotion")
    assert "--promotion takes guarded, always or both, got 'sometimes'" in capsys.readouterr().out
    with pytest.raises(typer.Exit):
        choices("", ("6k", "32k", "64k"), "--lengths")
    assert "--lengths takes one or more of 6k, 32k, 64k" in capsys.readouterr().out


def test_system_names_list_the_known_systems(capsys: pytest.CaptureFixture[str]) -> None:
    assert system_names("memq, chroma") == ["memq", "chroma"]
    with pytest.raises(typer.Exit):
        system_names("memq,nope")
    out = " ".join(capsys.readouterr().out.split())
    assert "unknown system(s) ['nope']" in out and "memq-dense" in out


def _result(variant: str, **metrics: float) -> BenchResult:
    return BenchResult(system="s", dataset="d", variant=variant, metrics=metrics, seconds=1.0)


def test_quality_metrics_leave_out_slices_costs_counts_and_spreads() -> None:
    results = [
        _result("a", **{"recall@5": 0.5, "recall@5/cat1": 0.4, "recall@5/std": 0.1, "search_ms_p50": 3.0}),
        _result("b", **{"recall@5": 0.6, "questions": 120.0, "ndcg@10": 0.3}),
    ]
    assert quality_metrics(results) == ["recall@5", "ndcg@10"]


def test_slice_order_puts_preferred_bases_first_then_natural_order() -> None:
    results = [_result("a", **{"em@1/6k": 1.0, "em@1/32k": 0.5, "recall@10/cat2": 0.1, "recall@5/cat1": 0.2})]
    got = slice_order(results, preferred=("recall@5", "em@1"))
    assert list(got) == ["recall@5", "em@1", "recall@10"]
    assert got["em@1"] == ["6k", "32k"]


class _Progress:
    """Records what a runner does to its progress display."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object, int]] = []

    def add_task(self, label: str, total: int) -> int:
        self.calls.append(("add", label, total))
        return len(self.calls)

    def advance(self, task: int, n: int) -> None:
        self.calls.append(("advance", task, n))


def test_run_hooks_record_args_tick_progress_and_checkpoint() -> None:
    progress, saved = _Progress(), []
    hooks = RunHooks({"k": [5]}, progress, saved.append)
    results = hooks.new_results("demo", extra={"notes": ["n"]})
    assert results.benchmark == "demo" and results.args == {"k": [5]} and results.extra == {"notes": ["n"]}
    advance = hooks.tick("questions", 3)
    assert advance is not None
    advance()
    advance(2)
    assert progress.calls == [("add", "questions", 3), ("advance", 1, 1), ("advance", 1, 2)]
    hooks.save(results)
    assert saved == [results]
    # without a display or a checkpoint: no hook, nothing saved, nothing raised
    assert NO_HOOKS.tick("questions", 3) is None
    NO_HOOKS.save(ResultsFile(benchmark="demo"))
    assert NO_HOOKS.new_results("demo").args == {}
