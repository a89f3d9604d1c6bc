"""The import contracts and the repository's self-containment, read from the sources with ast.

- The checkpoint stores (state/file.py, state/configmap.py, state/s3.py) never import one another,
  nor the `state` package root that picks between them: each can change alone, and a run loads
  only the one its --state names.
- The state package and everything it loads know nothing of Loki (the push path, its client, the
  dry-run sink): the stores move the checkpoint's bytes, whatever the run sends.
- The ledger (job/dedupe.py, job/selection.py) and everything it loads does no I/O and decides
  nothing by chance or by reading a clock: it is the pure part of a run, so a run decides the same
  on a simulated clock (the property tests) as on the real one.
- No module of job/ or state/ does work at import time beyond definitions.
- No module of job/ or state/ but job/kube.py imports the kubernetes client: they take its names
  from job.kube, so the lean client (no generated models) holds whichever module is imported first,
  in a test's process as in `python -m job`. The lean loader falls back to the plain import when
  the client's layout is not what it expects, and turns a lazy package into the real one once.
- A test module takes its helpers from the helper modules of tests/ (conftest.py's Harness, the two
  test servers, manifests.py, workloads.py, ...), never from another test module: a helper has one
  home, and a test file can be read, run or deleted alone.
- No file under job/, state/, bench/ or tests/ names a path outside the repository: a clone is
  self-contained.

What counts as I/O for the ledger: the network (socket, ssl, http, urllib.request, urllib3,
requests, and the clients built on them: kubernetes, boto3, botocore, s3transfer), files and the
process environment (os, io, pathlib, shutil, tempfile, glob), other processes and signals
(subprocess, multiprocessing, signal), event loops (asyncio, select, selectors); plus `random`
(chance). `time` is allowed for formatting (time.strftime) but never read (time.time, monotonic,
sleep), and neither is datetime's now(): time comes in as event times and the injected job.clock.
`logging` is allowed: log records are observations, not inputs.
"""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIRST_PARTY = ("job", "state", "bench", "tests", "tools")
STORES = ("state.file", "state.configmap", "state.s3")
LEDGER = ("job.dedupe", "job.selection")
# One batch, one acknowledged request: the Loki client and what it loads know nothing of batching.
LOKI_CLIENT = ("job.lokiclient", "job.transport", "job.lokianswers")
BATCHING = ("job.loki", "job.dryrun", "queue")
LEDGER_FORBIDDEN = (
    "socket", "ssl", "http", "urllib.request", "urllib3", "requests", "kubernetes", "boto3", "botocore",
    "s3transfer", "os", "io", "pathlib", "shutil", "tempfile", "glob", "subprocess", "multiprocessing",
    "signal", "asyncio", "select", "selectors", "random",
)
CLOCK_READS = {"time", "time_ns", "monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns", "sleep"}
DATETIME_NOW = {"now", "utcnow", "today"}
# The process entry point does its work at import by design (gc.freeze, the SIGTERM handler, main()).
ENTRY_POINTS = {"job/__main__.py"}


def module_path(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _is_type_checking_test(test: ast.expr) -> bool:
    """TYPE_CHECKING, typing.TYPE_CHECKING, or `not` either."""
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        test = test.operand
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk_executed(nodes: Iterable[ast.stmt], *, module_level_only: bool) -> Iterator[ast.AST]:
    """The statements that run: skips `if TYPE_CHECKING:` bodies, and function bodies when asked."""
    for node in nodes:
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from _walk_executed(node.orelse, module_level_only=module_level_only)
            continue
        if module_level_only and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                yield from _walk_executed([child], module_level_only=module_level_only)
            else:
                yield from ast.walk(child)


def imports(path: Path, *, module_level_only: bool = False) -> set[str]:
    """Every module `path` imports, fully qualified (relative imports and `from pkg import mod` resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found: set[str] = set()
    for node in _walk_executed(tree.body, module_level_only=module_level_only):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            found.add(mod)
            for alias in node.names:  # `from state import file` imports the module state.file
                if module_path(f"{mod}.{alias.name}") is not None:
                    found.add(f"{mod}.{alias.name}")
    return found


def _matches(module: str, prefixes: Iterable[str]) -> str | None:
    return next((p for p in prefixes if module == p or module.startswith(p + ".")), None)


def ledger_closure(roots: Iterable[str] = LEDGER) -> dict[str, set[str]]:
    """What the ledger (or ``roots``) loads: its own imports (any level) and, for what they reach, what
    runs at import.

    A dependency's deferred imports (inside functions) run only if the ledger calls them; the
    ledger's own deferred imports are counted because they are its code paths.
    """
    seen: dict[str, set[str]] = {}
    todo = [(name, False) for name in roots]
    while todo:
        name, module_level_only = todo.pop()
        if name in seen:
            continue
        path = module_path(name)
        assert path is not None, name
        seen[name] = imports(path, module_level_only=module_level_only)
        parents = [".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)]
        for dep in [*seen[name], *parents]:  # importing a.b runs a/__init__.py first
            if dep.split(".")[0] in FIRST_PARTY and module_path(dep) is not None:
                todo.append((dep, True))
    return seen


def test_the_stores_never_import_one_another_nor_the_state_package_root() -> None:
    for store in STORES:
        path = module_path(store)
        assert path is not None, store
        bad = sorted(m for m in imports(path) if m == "state" or (m in STORES and m != store))
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}: a store may use state.base only"


STATE = ("state", "state.base", *STORES)
LOKI_SIDE = ("job.loki", "job.lokiclient", "job.lokianswers", "job.transport", "job.dryrun", "job.batch",
             "job.logproto")


def test_the_state_package_and_everything_it_loads_know_nothing_of_loki() -> None:
    closure = ledger_closure(STATE)
    assert {"state.configmap", "state.s3", "state.file", "job.kube"} <= set(closure)  # the walk reached the stores
    bad = sorted((mod, dep) for mod, deps in closure.items() for dep in deps if _matches(dep, LOKI_SIDE))
    assert not bad, f"state/ reaches the Loki side: {bad} (module, import)"


def test_the_ledger_and_everything_it_loads_import_no_io_module_nor_random() -> None:
    closure = ledger_closure()
    assert {"job.dedupe", "job.selection", "state.base"} <= set(closure)  # the walk did reach its deps
    bad = sorted((mod, dep) for mod, deps in closure.items() for dep in deps if _matches(dep, LEDGER_FORBIDDEN))
    assert not bad, f"the ledger reaches I/O or chance: {bad} (module, import)"


def test_the_loki_client_knows_nothing_of_batching_queues_or_the_dry_run() -> None:
    closure = ledger_closure(LOKI_CLIENT)
    assert {"job.lokiclient", "job.transport", "job.lokianswers", "job.batch"} <= set(closure)
    bad = sorted((mod, dep) for mod, deps in closure.items() for dep in deps if _matches(dep, BATCHING))
    assert not bad, f"the Loki client reaches the batching pipeline: {bad} (module, import)"
    assert not any(m.startswith("job.") for m in imports(ROOT / "job/lokianswers.py")), \
        "reading Loki's answers is pure text work: it needs no other module of the job"


def test_the_ledger_never_reads_a_clock() -> None:
    reads = []
    for name in ledger_closure():
        path = module_path(name)
        assert path is not None
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                owner = node.func.value
                owner_name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")
                if (owner_name == "time" and node.func.attr in CLOCK_READS) or node.func.attr in DATETIME_NOW:
                    reads.append(f"{path.relative_to(ROOT)}:{node.lineno} {owner_name}.{node.func.attr}()")
    assert not reads, f"the ledger reads a clock instead of event times or the injected clock: {reads}"


def test_loading_the_ledger_loads_no_io_module_at_run_time() -> None:
    """The same contract, by importing: catches what a third-party dependency drags in."""
    code = (
        "import sys, json; before = set(sys.modules); import job.dedupe, job.selection; "
        "print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    assert "job.selection" in loaded
    bad = [m for m in loaded if _matches(m, LEDGER_FORBIDDEN)]
    assert not bad, f"importing the ledger loaded {bad}"


def _is_import_fallback(node: ast.stmt) -> bool:
    """`try: import fast / except ImportError: import slow`: a definition, not work."""
    only_imports = (ast.Import, ast.ImportFrom, ast.Assign, ast.Pass)
    return (isinstance(node, ast.Try) and not node.finalbody and not node.orelse
            and all(isinstance(s, only_imports) for s in node.body)
            and all(isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
                    and all(isinstance(s, only_imports) for s in h.body) for h in node.handlers))


def _eager(expr: ast.AST) -> Iterator[ast.AST]:
    """The nodes of an expression evaluated right away (a lambda's body waits for its call)."""
    yield expr
    for child in ast.iter_child_nodes(expr):
        if not isinstance(child, ast.Lambda):
            yield from _eager(child)


def _product_modules() -> list[Path]:
    return sorted(p for d in ("job", "state") for p in (ROOT / d).glob("*.py")
                  if p.relative_to(ROOT).as_posix() not in ENTRY_POINTS)


def _import_time_work(path: Path, body: list[ast.stmt], top: bool) -> Iterator[str]:
    allowed = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign,
               ast.AnnAssign)
    for i, node in enumerate(body):
        docstring = top and i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        if docstring or _is_import_fallback(node):
            continue
        if isinstance(node, ast.If) and _is_type_checking_test(node.test):
            # `if TYPE_CHECKING:` / `if not TYPE_CHECKING:` choose between definitions for the type
            # checker and for the run: the same rules hold inside.
            yield from _import_time_work(path, node.body, False)
            yield from _import_time_work(path, node.orelse, False)
            continue
        if not isinstance(node, allowed):
            yield f"{path.relative_to(ROOT)}:{node.lineno} {type(node).__name__}"
            continue
        if not isinstance(node, (ast.Assign, ast.AnnAssign)) or node.value is None:
            continue  # definitions: their bodies run when called
        # A constant may be computed (re.compile, a decoder, a lazy proxy), but not read from the world.
        for sub in _eager(node.value):
            touches = (isinstance(sub, ast.Name) and sub.id in ("open", "print", "input")) or (
                isinstance(sub, ast.Attribute) and sub.attr in ("environ", "getenv", "stdin", "stdout", "stderr"))
            if touches:
                yield f"{path.relative_to(ROOT)}:{node.lineno} reads {ast.unparse(sub)} at import"


def test_no_product_module_does_work_at_import_time_beyond_definitions() -> None:
    work = [w for path in _product_modules()
            for w in _import_time_work(path, ast.parse(path.read_text(encoding="utf-8")).body, True)]
    assert not work, work


def test_importing_every_product_module_starts_no_thread_and_configures_no_logging() -> None:
    names = [module_name(p) for p in _product_modules()]
    code = (
        "import json, logging, sys, threading; "
        f"[__import__(m) for m in {names!r}]; "
        "print(json.dumps([threading.active_count(), len(logging.getLogger().handlers)]))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    threads, handlers = json.loads(out.stdout)
    assert threads == 1, "a module started a thread at import time"
    assert handlers == 0, "a module configured logging at import time (main() does that)"


# --- the kubernetes client comes from job.kube ---------------------------------------------------------

CLIENT_OWNER = "job/kube.py"


def test_only_job_kube_imports_the_kubernetes_client() -> None:
    bad = sorted(f"{p.relative_to(ROOT)}: {m}" for p in _product_modules() if p.relative_to(ROOT).as_posix()
                 != CLIENT_OWNER for m in imports(p) if _matches(m, ("kubernetes",)))
    assert not bad, f"import the client's names from job.kube (it keeps the client lean): {bad}"


def _python(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


def test_importing_and_building_the_api_side_in_process_loads_none_of_the_generated_models() -> None:
    """Without job/__main__'s set-up, as tests and `main()` callers have it: the Lease, the ConfigMap store and
    the lister still use the lean client."""
    names = [module_name(p) for p in _product_modules()]
    code = (
        "import sys; "
        f"[__import__(m) for m in {names!r}]; "
        "import job.lease as lease, state.configmap as cm; api = lease.ApiClient(); "
        "lease.CoordinationV1Api(api); cm.CoreV1Api(api); assert issubclass(cm.ApiException, Exception); "
        "print(sum(m.startswith('kubernetes.client.models.') for m in sys.modules), "
        "'kubernetes.client.api.coordination_v1_api' in sys.modules)"
    )
    assert _python(code).split() == ["0", "True"]


def _moved(name: str, where: str) -> str:
    return f'kube._CLIENT_NAMES["{name}"] = kube._NAMES["kubernetes.client.{name}"] = "{where}"'


_SURPRISES = {
    "a mapped module renamed": _moved("CoordinationV1Api", "kubernetes.client.api.coordination_v2_api"),
    "a name moved out of its module": _moved("ApiException", "kubernetes.client.configuration"),
    "a package missing": 'kube._LAZY_PACKAGES = (*kube._LAZY_PACKAGES, "kubernetes.client.gone")',
}


@pytest.mark.parametrize("surprise", sorted(_SURPRISES))
def test_a_client_layout_the_lean_loader_does_not_expect_falls_back_to_the_plain_import(surprise: str) -> None:
    code = (
        "from job import kube\n"
        f"{_SURPRISES[surprise]}\n"
        "from job.kube import ApiClient, ApiException, CoordinationV1Api, CoreV1Api\n"
        "import kubernetes.client as real\n"
        "from kubernetes.client.api.coordination_v1_api import CoordinationV1Api as C\n"
        "from kubernetes.client.exceptions import ApiException as E\n"
        "assert CoordinationV1Api is C and ApiException is E and CoreV1Api is real.CoreV1Api\n"
        "assert real.V1ObjectMeta(name='x').name == 'x'\n"
        "CoordinationV1Api(ApiClient())\n"
        "print('ok')\n"
    )
    assert _python(code) == "ok"


def test_threads_that_reach_an_unmapped_name_at_once_all_get_the_real_package_whose_init_ran_once() -> None:
    """The lister thread and the run's thread can both be first: a second must wait for the real __init__
    (slowed here to widen the window), not read the package half-run."""
    code = """
import sys, threading, time
from job import kube
kube.lean_kubernetes()
package = sys.modules["kubernetes.client"]
loader, runs = package.__spec__.loader, []
real_exec = loader.exec_module

def slow_exec(module):
    runs.append(1)
    time.sleep(0.2)
    real_exec(module)

loader.exec_module = slow_exec
start, got = threading.Barrier(8), []

def use():
    start.wait()
    got.append(package.V1ObjectMeta)

threads = [threading.Thread(target=use) for _ in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
print(len(runs), len(got), len({id(c) for c in got}))
"""
    assert _python(code).split() == ["1", "8", "1"]


# --- no path outside the repository ----------------------------------------------------------------

# First segments of absolute filesystem paths (Linux and macOS). URL paths (/api/v1/events,
# /loki/api/v1/push) do not start so.
ROOTS = ("bin", "boot", "dev", "etc", "home", "lib", "lib64", "media", "mnt", "opt", "proc", "root", "run",
         "sbin", "srv", "sys", "tmp", "usr", "var", "work", "Users", "Volumes", "private")
_ABSOLUTE = re.compile(rf"^/({'|'.join(ROOTS)})(/|$)")
# Where people and machines keep their data: named anywhere, such a path is this machine's, not the
# repository's. Other absolute paths may be named as text (the image's /opt/venv, the pod's
# /var/run/secrets/..., a KUBECONFIG value to parse) but not opened.
_USER_DATA = re.compile(r"^/(home|work|Users|root|mnt|srv|media|Volumes)(/|$)")
FILE_APIS = {"Path", "PurePath", "PosixPath", "open", "listdir", "scandir", "exists", "isfile", "isdir", "glob",
             "iglob", "copy", "copyfile", "copytree", "rmtree", "stat", "chdir", "load_kube_config", "read_text"}
# Absolute paths the code may open, and why none of them is a file this repository depends on.
ALLOWED_OPEN = {
    "/proc/self/status": "the kernel's account of the running process (the benchmark's peak RSS)",
}
# The reference notes outside the repository, however they are spelled.
_OUTSIDE = re.compile(r"/work/|\.\./shared|\bshared/(examples|[A-Z]+\.md)|\b(KUBERNETES|LOKI|STYLE)\.md\b")


def _repo_files() -> list[Path]:
    me = Path(__file__).resolve()
    return sorted(p for d in FIRST_PARTY for p in (ROOT / d).rglob("*")
                  if p.is_file() and p.resolve() != me and "__pycache__" not in p.parts
                  and p.suffix in (".py", ".md", ".json", ".yaml", ".yml", ".txt", ".toml", ".ini"))


def outside_paths(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """Absolute paths of this machine a module names (user data) or opens (any, through a file API)."""
    opened: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if name in FILE_APIS:
                opened.update(id(arg) for arg in [*node.args, *(k.value for k in node.keywords)])
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            for word in node.value.split():
                word = word.strip("\"'(),;:")
                if _USER_DATA.match(word) or (id(node) in opened and _ABSOLUTE.match(word)
                                              and word not in ALLOWED_OPEN):
                    yield node.lineno, word


def test_no_test_module_imports_another_test_module() -> None:
    found = {str(path.relative_to(ROOT)): bad for path in sorted((ROOT / "tests").rglob("test_*.py"))
             if (bad := sorted(m for m in imports(path) if m.rpartition(".")[2].startswith("test_")))}
    assert not found, f"move the helper into a helper module of tests/ (or onto the Harness): {found}"


def test_no_file_references_the_shared_notes_or_a_path_outside_the_repository() -> None:
    found = []
    for path in _repo_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for n, line in enumerate(text.splitlines(), 1):
            if _OUTSIDE.search(line):
                found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()[:100]}")
        if path.suffix == ".py":
            found += [f"{path.relative_to(ROOT)}:{n}: {word}" for n, word in outside_paths(ast.parse(text))]
    assert not found, "a clone must be self-contained; copy the data into tests/data or the facts into docs/:\n" + \
        "\n".join(found)


@pytest.mark.parametrize("text", ["/work/shared/examples/x.json", "see ../shared/LOKI.md", "(KUBERNETES.md)"])
def test_the_outside_reference_check_catches_each_spelling(text: str) -> None:
    assert _OUTSIDE.search(text)


@pytest.mark.parametrize(("source", "outside"), [
    ('EXAMPLES = Path("/work/shared/examples")', True),
    ('DATA = "/home/me/events.json"', True),
    ('open("/etc/passwd")', True),
    ('Path("/tmp") / "x"', True),
    ('IMAGE_VENV = "/opt/venv"', False),  # a path in the image, named as text
    ('env = {"KUBECONFIG": "/tmp/kc"}', False),  # a value parsed, never opened
    ('url = base + "/api/v1/events"', False),
    ('open("/proc/self/status")', False),  # allowed, with its reason
])
def test_the_path_check_tells_this_machines_files_from_text(source: str, outside: bool) -> None:
    assert bool(list(outside_paths(ast.parse(source)))) is outside
