"""What the ORCA CrossGuard packs share: resource access safe at preview, and the policies.

``policies/cost`` and ``policies/safety`` are two Pulumi policy packs; each pack's
``__main__.py`` only puts this package on ``sys.path`` and builds its ``PolicyPack`` from
:data:`orca_policies.cost.POLICIES` or :data:`orca_policies.safety.POLICIES`.
:mod:`orca_policies.values` turns what the engine sends (with values unknown at preview)
into plain data and builds policies whose checks never see an unknown value.
"""
