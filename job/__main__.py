from job.main import main

raise SystemExit(main())
