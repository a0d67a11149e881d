"""``python -m orca.agent --config FILE``: the agent, as user data starts it."""

import sys

from orca.agent.main import cli_main

sys.exit(cli_main())
