"""Run `python -m job ...` and write its memory to $BENCH_HWM_FILE at exit (JSON, kB).

``hwm_kb`` is the peak RSS (VmHWM). The kernel carries ru_maxrss across fork and exec, so a child
of the benchmark (which holds 100k events in its servers) would report the parent's size; VmHWM
belongs to the new address space. ``imports_kb`` is the RSS once the job's modules are imported,
exactly as job/__main__.py imports them, before main() reads anything: the difference is what the
run itself costs.
"""
import atexit
import gc
import json
import os
import runpy
import sys


def _kb(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith(field)).split()[1])


def main() -> None:
    gc.disable()  # as job/__main__.py does around its imports (it freezes and re-enables after)
    from job import kube

    kube.lean_kubernetes()
    import job.main
    import job.sync  # noqa: F401

    imports_kb = _kb("VmRSS:")

    def report() -> None:
        with open(os.environ["BENCH_HWM_FILE"], "w") as out:
            json.dump({"hwm_kb": _kb("VmHWM:"), "imports_kb": imports_kb}, out)

    atexit.register(report)
    sys.argv = ["job", *sys.argv[1:]]
    runpy.run_module("job", run_name="__main__", alter_sys=True)


main()
