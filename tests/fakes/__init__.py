"""Stateful fakes of ORCA's cloud edges, for fast unit tests of the deciding code.

Each fake has the same public methods as the real gateway it stands for and
keeps state the way the real service does, so a test drives it like the cloud
(launch, then change an instance's state, then reconcile) instead of patching
calls. Errors are injected as the real service would raise them.
"""
