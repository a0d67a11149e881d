"""The components of the ORCA burst envelope; ``infra/__main__.py`` wires them per stack.

Every component is a ``pulumi.ComponentResource`` with the type token
``orca:<module>:<Type>``, takes ``(name, args, opts)`` with an args dataclass, parents its
children to itself under names derived from its own, and registers its outputs last.
"""
