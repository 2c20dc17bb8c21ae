from mtasts.cli import main

raise SystemExit(main())
