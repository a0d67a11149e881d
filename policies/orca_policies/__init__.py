"""What the ORCA CrossGuard packs share: resource access safe at preview, and the policies.

``policies/cost`` and ``policies/safety`` are two Pulumi policy packs; each pack's
``__main__.py`` only puts this package on ``sys.path`` and builds its ``PolicyPack`` from
:data:`orca_policies.cost.POLICIES` or :data:`orca_policies.safety.POLICIES`, which name and
configure the checks of :mod:`orca_policies.cost_checks` and
:mod:`orca_policies.safety_checks`. :mod:`orca_policies.values` turns what the engine sends
into plain data, with a sentinel for each value unknown at preview, so a check skips exactly
what it cannot know. ``policies/bundle.py`` builds self-contained copies for publishing.
"""
