import gc
import signal

# Imports build ~100k objects that live as long as the process; collecting cycles among them while
# they are made is wasted work (about 10 ms of a 0.13 s start-up): collect nothing until they are
# frozen out of the collector's way below.
gc.disable()

from job import kube  # noqa: E402

# The kubernetes client without its 769 generated models (job/kube.py says how): before anything
# imports it. Here, at the process entry point, so importing job.kube has no side effect.
kube.lean_kubernetes()

import job.sync  # noqa: E402,F401  (the heavy imports, the kubernetes client among them, before the freeze)
from job.main import main  # noqa: E402

# What is imported lives as long as the process: keep the cyclic GC from re-scanning those ~40 MB of
# objects while a large run allocates. Here, not in main(), which tests call many times in one process.
gc.freeze()
gc.enable()
# Kubernetes stops a pod with SIGTERM (activeDeadlineSeconds, eviction): unwind like Ctrl-C, so the
# Lease is released and the checkpoint is left as it was, instead of dying mid-step.
signal.signal(signal.SIGTERM, signal.default_int_handler)
raise SystemExit(main())
