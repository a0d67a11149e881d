"""Building an API client from a kubeconfig or the in-cluster service account."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException


def api_client(kubeconfig: Path | None = None) -> client.ApiClient:
    """A client for the cluster: the given kubeconfig, else in-cluster, else ~/.kube/config."""
    configuration = client.Configuration()
    if kubeconfig is not None:
        config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    else:
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            config.load_kube_config(client_configuration=configuration)
    return client.ApiClient(configuration)


def body(response: Any) -> Any:
    """The JSON body of a call made with ``_preload_content=False``."""
    return json.loads(response.data or b"null")


def is_status(error: ApiException, *codes: int) -> bool:
    return error.status in codes
