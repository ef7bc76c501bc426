"""`python -m kb_mcp`: the `kb-mcp` command."""

import sys

from kb_mcp.cli import main

sys.exit(main())
