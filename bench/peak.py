"""Run `python -m job ...` and write its peak RSS (VmHWM, kB) to $BENCH_HWM_FILE at exit.

The kernel carries ru_maxrss across fork and exec, so a child of the benchmark (which holds 100k
events in its servers) would report the parent's size; VmHWM belongs to the new address space.
"""
import atexit
import os
import runpy
import sys


def _report() -> None:
    with open("/proc/self/status") as f:
        hwm = next(line for line in f if line.startswith("VmHWM:"))
    with open(os.environ["BENCH_HWM_FILE"], "w") as out:
        out.write(hwm.split()[1])


atexit.register(_report)
sys.argv = ["job", *sys.argv[1:]]
runpy.run_module("job", run_name="__main__", alter_sys=True)
