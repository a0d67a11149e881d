"""ORCA: burst Kubernetes pods to EC2 instances of exactly the type a researcher names.

The package is layered. ``orca.kube`` and ``orca.aws`` talk to the Kubernetes
API and to AWS and know nothing of ORCA's decisions; ``orca.contract``,
``orca.catalog`` and ``orca.tags`` hold the product's rules; the controller
modules (``orca.controller``, ``orca.launching``, ``orca.garbage_collection``,
``orca.node``) decide, using only the two lower layers. ``orca.agent`` is what
runs on the instance.
"""

__version__ = "0.1.0"
