"""The Kubernetes side: the API adapter and the pure rules about Kubernetes objects.

Adapters (the only modules that import ``kubernetes``): ``client`` (connection, discovery,
domain verbs, status codes mapped to our errors), ``apply`` (server-side apply with field
manager ``promote``, ordering, the inventory's ConfigMap), ``cache`` (label-selected watches),
``lease`` (leader election). Pure (data in, data out, no I/O): ``health`` (Argo CD's health
rules per kind), ``drift`` (what differs between desired and live), ``inventory`` (the prune
set difference), ``validation`` (checks on rendered objects).
"""
