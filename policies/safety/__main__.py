"""The ORCA safety policy pack: ``pulumi preview --policy-pack policies/safety``.

The CLI starts this pack with the pack's own folder as the working directory. In the
repository the policies, shared with the cost pack, are imported from
``policies/orca_policies`` after putting ``policies/`` on the path; a copy built for
publishing (``policies/bundle.py``) carries them in its own folder. Mandatory by default: a
violation stops the update.
"""

import sys
from pathlib import Path

# The folder that holds orca_policies: this one in a bundled copy, else policies/.
sys.path.insert(
    0,
    str(
        Path(__file__).resolve().parent
        if Path(__file__).with_name("orca_policies").is_dir()
        else Path(__file__).resolve().parents[1]
    ),
)

from orca_policies import safety
from pulumi_policy import EnforcementLevel, PolicyPack

PolicyPack(
    name="orca-safety",
    description="Refuses an ORCA department envelope that would open a hole.",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=safety.POLICIES,
)
