"""No figure in README.md or docs/ disagrees with its source: plan's model, the recorded benchmark
(docs/benchmark.json), the install, or the code's constants (tools/figures.py computes each).

A failure prints what the document should say; `python tools/figures.py` prints the tables.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from job import cmd, lease, plan
from tests.lokidouble import REJECT_OLD_SAMPLES_MAX_AGE_NS
from tools import figures

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
PERFORMANCE = (ROOT / "docs" / "performance.md").read_text(encoding="utf-8")
INSTALL = (ROOT / "docs" / "install.md").read_text(encoding="utf-8")


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def _cronjob() -> dict[str, Any]:
    return next(d for d in yaml.safe_load_all((ROOT / "cronjob.yaml").read_text()) if d and d["kind"] == "CronJob")


def _section(text: str, title: str) -> str:
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 3)
    return text[start:end if end > 0 else None]


def test_the_tables_are_what_their_sources_give() -> None:
    for table in (figures.cost_table(), figures.schedule_table(), figures.exit_code_table()):
        assert table in README, f"README.md should hold:\n{table}"
    for table in (figures.targets_table(), figures.runs_table(), figures.api_modes_table(), figures.imports_table()):
        assert table in PERFORMANCE, f"docs/performance.md should hold:\n{table}"


def test_every_memory_figure_in_the_readme_is_one_the_benchmark_recorded() -> None:
    recorded = {f"{figures.peak_rss_mb(n):.0f}" for n in figures.SIZES}
    recorded |= {f"{i['rss_mb']:.0f}" for i in figures.recorded()["imports"]}
    stated = set(re.findall(r"\b(\d+(?:\.\d+)?) MB\b", README))
    assert stated and stated <= recorded, f"README states {sorted(stated - recorded)} MB, which nothing recorded"
    assert f"100,000 events per run is {figures.peak_rss_mb(100_000):.0f} MB" in _flat(README)


def test_the_memory_request_and_limit_the_docs_state_are_the_installs() -> None:
    (container,) = _cronjob()["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    res = container["resources"]
    assert f"request `{res['requests']['memory']}`, limit `{res['limits']['memory']}`" in README
    assert f"memory: {res['requests']['memory']}`, limits `cpu: {res['limits']['cpu']}, " \
           f"memory: {res['limits']['memory']}`" in INSTALL
    assert f"{figures.peak_rss_mb(100_000):.0f} MB at 100,000" in _flat(INSTALL)
    assert "118.6" not in INSTALL + README + PERFORMANCE


def test_every_cpu_figure_in_the_readme_is_plans() -> None:
    stated = set(re.findall(r"about (\d+(?:\.\d+)?) CPU-s", README))
    daemon = f"{plan.DAEMON_CPU_S_PER_DAY:.0f}"
    assert stated <= {daemon}, stated  # the rest are in the tables checked above
    per_run = figures.planned()["cpu_s_per_run"]
    assert f"| `*/10 * * * *` | 540s | 144 | {per_run:.2f} |" in README
    assert "0.23 CPU-s" not in README


def test_the_plan_figures_in_performance_md_are_the_models_constants() -> None:
    text = _flat(_section(PERFORMANCE, "Plan figures"))
    assert f"{plan.CPU_S_PER_RUN} CPU-s a run, {plan.CPU_S_PER_EVENT * 1e6:.1f} µs per listed event" in text
    assert f"{plan.CPU_S_PER_NEW_EVENT * 1e6:.1f} µs per new event" in text
    assert f"about {figures.planned()['cpu_s_per_day']:.0f} CPU-s a day" in text
    assert f"about {plan.DAEMON_CPU_S_PER_DAY:.0f} for an always-on daemon" in text


def test_the_configmap_capacity_the_readme_states_is_plans() -> None:
    (stated,) = re.findall(r"holds about ([\d,]+) entries in 1 MiB", README)
    assert int(stated.replace(",", "")) == round(plan.CONFIGMAP_CAPACITY, -4)


def test_deadlines_and_lease_figures_are_the_codes_and_the_installs() -> None:
    spec = _cronjob()["spec"]["jobTemplate"]["spec"]
    flat = _flat(README)
    assert f"`activeDeadlineSeconds` of {spec['activeDeadlineSeconds']} s" in flat
    assert f"`--deadline` (default `{cmd.DEFAULT_DEADLINE_S / 60:.0f}m`" in flat
    assert cmd.DEFAULT_DEADLINE_S < spec["activeDeadlineSeconds"]
    assert f"`activeDeadlineSeconds` ({spec['activeDeadlineSeconds']} s)" in flat
    assert f"plus {lease.SKEW_S:.0f} s (or the duration, if shorter)" in flat
    assert lease.RENEW_DEADLINE_SHARE == 2 / 3 and "retried until two thirds of the duration" in flat


def test_the_image_pinning_the_readme_states_is_what_each_install_does() -> None:
    (container,) = _cronjob()["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert "@sha256:" not in container["image"]  # the repository's cronjob.yaml pins the tag only
    assert "with the image pinned by tag only: `kubectl apply -f cronjob.yaml`" in _flat(README)
    release = (ROOT / ".github" / "workflows" / "release.yml").read_text(encoding="utf-8")
    assert "pinned by tag and digest" in release and "pinned by tag and digest" in README


def test_the_backfill_section_says_what_lokis_age_limit_does_to_old_dumps() -> None:
    text = _flat(README[README.index("A backfill can only re-ship"):README.index("### Choosing a schedule")])
    assert "old events still land" not in text
    assert "`reject_old_samples_max_age`" in text and "7 days by default" in text and "rejected" in text
    facts = _flat((ROOT / "docs" / "loki-facts.md").read_text(encoding="utf-8"))
    assert "`reject_old_samples_max_age` (`limits_config`, default 7 days" in facts
    assert REJECT_OLD_SAMPLES_MAX_AGE_NS == 7 * 86_400 * 10**9  # the double the tests push to agrees


def test_the_benchmark_docs_are_for_users_not_a_progress_report() -> None:
    for where, text in (("README Benchmark", _section(README, "Benchmark")), ("docs/performance.md", PERFORMANCE)):
        for phrase in ("issue 13", "previous round", "this round", "before this round"):
            assert phrase not in text.lower(), f"{where}: {phrase!r}"
    bench = _section(README, "Benchmark")
    assert "python -m bench" in bench and "python -m job plan" in bench and "What you trade by schedule" in bench


# A module path as the architecture page writes it: job/x.py or state/x.py, not part of a longer path.
_MODULE_PATH = re.compile(r"(?<![\w./-])(?:job|state)/\w+\.py\b")


def test_the_architecture_map_names_every_module_and_only_modules_that_exist() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = set(_MODULE_PATH.findall(text))
    modules = {p.relative_to(ROOT).as_posix() for d in ("job", "state") for p in (ROOT / d).glob("*.py")
               if p.name != "__init__.py"}
    assert not modules - named, f"docs/architecture.md should have a paragraph on {sorted(modules - named)}"
    missing = sorted(path for path in named if not (ROOT / path).is_file())
    assert not missing, f"docs/architecture.md names modules that do not exist: {missing}"
