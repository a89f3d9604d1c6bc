import gc
import signal

from job import kube

# The kubernetes client without its 769 generated models (job/kube.py says how): before anything
# imports it. Here, at the process entry point, so importing job.kube has no side effect.
kube.lean_kubernetes()

import job.sync  # noqa: F401  (the heavy imports, the kubernetes client among them, before the freeze)
from job.main import main

# What is imported lives as long as the process: keep the cyclic GC from re-scanning those ~40 MB of
# objects while a large run allocates. Here, not in main(), which tests call many times in one process.
gc.freeze()
# Kubernetes stops a pod with SIGTERM (activeDeadlineSeconds, eviction): unwind like Ctrl-C, so the
# Lease is released and the checkpoint is left as it was, instead of dying mid-step.
signal.signal(signal.SIGTERM, signal.default_int_handler)
raise SystemExit(main())
