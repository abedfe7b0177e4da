from sysroot.cli.main import main

raise SystemExit(main())
