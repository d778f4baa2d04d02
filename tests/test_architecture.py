"""The house rules, checked: one facade API for sync and async, one method set per store backend, no
import cycles, small modules, and a CLI that pays only for what it runs."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from memq import AsyncMemory, Memory
from memq.store.contract import Candidates, LearnerStates, Records, RetrievalLog, store_methods
from memq.store.sqlite import SQLiteStore

SRC = Path(__file__).resolve().parents[1] / "src"
MAX_MODULE_LINES = 600


def _public(cls: type) -> set[str]:
    return {n for n in dir(cls) if not n.startswith("_")}


def test_sync_and_async_facades_offer_the_same_methods() -> None:
    sync, aio = _public(Memory) - {"open"}, _public(AsyncMemory) - {"open"}  # open: the async constructor
    assert sync == aio, f"only sync: {sorted(sync - aio)}; only async: {sorted(aio - sync)}"
    for name in sorted(sync):
        a, s = getattr(AsyncMemory, name), getattr(Memory, name)
        if isinstance(s, property):
            continue
        if name in ("usage",):  # in-memory counters: the same plain method on both
            assert a is s
            continue
        assert inspect.iscoroutinefunction(a) or inspect.isasyncgenfunction(a), (
            f"AsyncMemory.{name} is not async"
        )
        assert not (inspect.iscoroutinefunction(s) or inspect.isasyncgenfunction(s)), (
            f"Memory.{name} is async"
        )
        if name != "iter":  # the same parameters: both are bound from one operation
            assert list(inspect.signature(a).parameters) == list(inspect.signature(s).parameters), name


def test_hand_written_async_twins_take_their_sync_methods_parameters() -> None:
    import asyncio

    from memq._twins import async_twin
    from memq.integrations._recaller import Recaller
    from memq.llm.structured import StructuredLLM

    for cls, sync, aio in ((StructuredLLM, "structured", "astructured"), (Recaller, "feedback", "afeedback")):
        s, a = getattr(cls, sync), getattr(cls, aio)
        assert inspect.iscoroutinefunction(a), aio
        assert inspect.signature(a) == inspect.signature(s), aio
        assert a.__doc__, aio

    class Echo:
        def get(self, key: str, *, default: int = 0) -> tuple[str, int]:
            """A value."""
            return key, default

        @async_twin(get)
        async def aget(self, **args: object) -> object:
            return self.get(**args)  # type: ignore[arg-type]

    assert asyncio.run(Echo().aget("k")) == ("k", 0)
    assert asyncio.run(Echo().aget("k", default=3)) == ("k", 3)
    assert Echo.aget.__doc__ == "A value."
    with pytest.raises(TypeError):
        asyncio.run(Echo().aget("k", missing=1))


def test_every_store_offers_the_whole_contract_and_the_postgres_pair_matches() -> None:
    from memq.store.postgres import AsyncPostgresStore, PostgresStore

    contract = set()
    for part in (Records, Candidates, RetrievalLog, LearnerStates):
        contract |= {n for n in vars(part) if not n.startswith("_") and callable(getattr(part, n))}
    assert {"insert", "search_candidates", "apply_feedback", "save_learner_state"} <= contract
    for cls in (SQLiteStore, PostgresStore, AsyncPostgresStore):
        missing = contract - store_methods(cls)
        assert not missing, f"{cls.__name__} lacks {sorted(missing)}"
    assert store_methods(PostgresStore) - {"connect", "open"} == store_methods(AsyncPostgresStore) - {
        "connect",
        "open",
    }


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _top_level_imports(path: Path, package: str) -> set[str]:
    """Modules imported when ``path`` is imported: top-level statements only (imports inside
    functions are lazy, and ``if TYPE_CHECKING`` blocks never run)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        nodes = [node] if not isinstance(node, ast.Try) else node.body
        for n in nodes:
            if isinstance(n, ast.Import):
                found |= {a.name for a in n.names}
            elif isinstance(n, ast.ImportFrom) and n.module:
                base = n.module
                if n.level:  # relative
                    base = ".".join([*package.split(".")[: len(package.split(".")) - n.level + 1], n.module])
                found.add(base)
                found |= {f"{base}.{a.name}" for a in n.names}
    return found


def test_no_import_cycles_in_src() -> None:
    files = {p: _module_name(p) for p in SRC.rglob("*.py")}
    modules = set(files.values())
    graph: dict[str, set[str]] = {}
    for path, name in files.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        graph[name] = {m for m in _top_level_imports(path, package) if m in modules and m != name}
    # a package imports its own submodules through __init__; importing a submodule imports its
    # package first: only cycles between modules, not package/child edges, count
    for name in list(graph):
        graph[name] = {
            m for m in graph[name] if not m.startswith(name + ".") and not name.startswith(m + ".")
        }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_no_module_is_a_god_module() -> None:
    big = {
        str(p.relative_to(SRC)): n
        for p in SRC.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert not big, f"modules over {MAX_MODULE_LINES} lines: {big}"


@pytest.mark.parametrize("argv", [["--help"], ["search", "--help"]])
def test_the_cli_imports_no_benchmark_harness_and_no_torch(argv: list[str]) -> None:
    code = (
        "import sys\n"
        "from memq.cli import app\n"
        f"try:\n    app({argv!r})\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('memq_bench', 'torch', 'sentence_transformers', 'onnxruntime') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-500:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def _loaded_after(code: str, modules: tuple[str, ...]) -> list[str]:
    """Which of ``modules`` a fresh interpreter has imported after running ``code``."""
    probe = f"{code}\nimport sys\nprint(sorted(m for m in {modules!r} if m in sys.modules))\n"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-500:]
    return ast.literal_eval(done.stdout.strip().splitlines()[-1])


def test_cli_help_loads_neither_the_memory_stack_nor_client_libraries() -> None:
    # `memq --help` lists the commands; each command imports what it runs on when it runs
    code = "from memq.cli import app\ntry:\n    app(['--help'])\nexcept SystemExit:\n    pass"
    lazy = (
        *("memq.memory", "memq.ops.runner", "memq.embed", "httpx", "asyncio", "onnxruntime"),
        *("numpy", "pydantic", "memq.types", "memq.store.base", "memq.server.keys"),
    )
    assert _loaded_after(code, lazy) == []


def test_a_sync_search_loads_no_http_client_and_no_asyncio(tmp_path: Path) -> None:
    # httpx is the OpenAI-compatible embedder's, asyncio the async runner's: a sync search needs neither
    code = (
        "from memq import Memory\n"
        "from memq.embed import HashingEmbedder\n"
        f"with Memory({str(tmp_path / 'm.db')!r}, embedder=HashingEmbedder(64), scope='t') as mem:\n"
        "    mem.add('Alice moved to Berlin')\n"
        "    assert mem.search('where is Alice?', k=1).hits"
    )
    assert _loaded_after(code, ("httpx", "asyncio", "memq.embed.openai_compat")) == []


def test_only_the_cli_forwarder_imports_memq_bench() -> None:
    """memq_bench sits above memq: no memq module imports it, not even inside a function, except the
    CLI's forwarder of ``memq bench|demo|evolve|rl``."""
    allowed = {"memq.cli.common"}
    found = []
    for path in (SRC / "memq").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == "memq_bench" or n.startswith("memq_bench.") for n in names):
                found.append(_module_name(path))
    assert found and set(found) <= allowed, found
