from nas.commands.cli import main

raise SystemExit(main())
