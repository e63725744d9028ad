"""The user's YAML files, parsed once into frozen models (DESIGN.md §1, STYLE.md §3).

``model`` holds the models and the loader (``promote.yaml`` and ``environments/<env>.yaml``),
``release`` the release-control settings (verification after deploy, merge windows),
``schema`` the generic YAML-to-dataclass validator they are built with, ``scaffold`` the files
``promote init`` writes. Nothing outside this package reads configuration YAML; every error
names file, line, field and fix. It imports only :mod:`promote.errors`.
"""

from promote.config.model import (
    ENV_DIR,
    PROJECT_FILE,
    ApprovalsConfig,
    ClusterConfig,
    Environment,
    EnvironmentConfig,
    ForgeConfig,
    GatesConfig,
    IgnoreRule,
    PolicyConfig,
    Project,
    ProjectConfig,
    RemoteBaseConfig,
    RenderConfig,
    SecretsConfig,
    SyncConfig,
    VaultConfig,
    format_duration,
    load_project,
    parse_duration,
    pipeline_order,
)
from promote.config.release import (
    BreakGlassConfig,
    HttpCheck,
    JobCheck,
    RollbackMode,
    VerificationConfig,
    WindowRule,
    WindowsConfig,
)

__all__ = [
    "ENV_DIR",
    "PROJECT_FILE",
    "ApprovalsConfig",
    "BreakGlassConfig",
    "ClusterConfig",
    "Environment",
    "EnvironmentConfig",
    "ForgeConfig",
    "GatesConfig",
    "HttpCheck",
    "IgnoreRule",
    "JobCheck",
    "PolicyConfig",
    "Project",
    "ProjectConfig",
    "RemoteBaseConfig",
    "RenderConfig",
    "RollbackMode",
    "SecretsConfig",
    "SyncConfig",
    "VaultConfig",
    "VerificationConfig",
    "WindowRule",
    "WindowsConfig",
    "format_duration",
    "load_project",
    "parse_duration",
    "pipeline_order",
]
