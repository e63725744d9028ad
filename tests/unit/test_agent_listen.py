"""The agent's HTTP endpoint on an address it cannot use: an error naming the address."""

from __future__ import annotations

import socket

import pytest

from promote.errors import PromoteError, UsageError
from promote.reconcile import metrics


def test_an_address_in_use_is_named_not_a_traceback() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(PromoteError) as caught:
            metrics.serve(
                f"127.0.0.1:{port}",
                status=dict,
                healthy=lambda: True,
                metrics=metrics.Metrics(),
            )
    assert not isinstance(caught.value, UsageError)  # the flag is well formed: exit 1
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message and "in use" in message, message
