import signal

from job.main import main

# Kubernetes stops a pod with SIGTERM (activeDeadlineSeconds, eviction): unwind like Ctrl-C, so the
# Lease is released and the checkpoint is left as it was, instead of dying mid-step.
signal.signal(signal.SIGTERM, signal.default_int_handler)
raise SystemExit(main())
