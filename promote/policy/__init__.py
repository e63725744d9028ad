"""Policy as code: Kubernetes ValidatingAdmissionPolicies evaluated offline (DESIGN.md §7).

``model`` (the objects), ``matching`` (which requests a policy applies to), ``quantity`` and
``library`` (the Kubernetes CEL extensions), ``cel`` (the CEL engine) and ``evaluate`` are pure;
``files`` reads ``policies/``. The promotion side calls :func:`evaluate.evaluate` through
``promote.promotion.policies``.
"""
