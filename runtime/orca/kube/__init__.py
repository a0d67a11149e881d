"""The Kubernetes edge: pods, events, the node and its lease, as plain JSON objects.

The official client's generated models use snake_case attributes while the API,
kubectl and our status code speak camelCase, so this layer reads raw JSON
(``_preload_content=False``) and hands dicts upward. Nothing here decides.
"""
