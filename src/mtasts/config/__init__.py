"""Configuration: a TOML file over embedded defaults.

``sections``: the values, one frozen object per section; ``endpoint``: where things listen
or are reached; ``schema``: every key, how it is read, what an error says was expected,
and whether it needs a restart; ``load``: reading a file through the schema.
"""

from mtasts.config.endpoint import Endpoint
from mtasts.config.load import load_config, parse_config, read_table, user_state_dir
from mtasts.config.schema import restart_only
from mtasts.config.sections import (
    DEFAULT_CACHE_PATH,
    DEFAULT_CONFIG_PATH,
    LOG_LEVELS,
    SYSTEM_STATE_DIR,
    CacheSection,
    Config,
    ControlSection,
    DaneSection,
    FetchSection,
    LogSection,
    MetricsSection,
    PostfixSection,
    PublishSection,
    ReportsSection,
    ResolverSection,
    SocketmapSection,
    with_values,
)

__all__ = [
    "DEFAULT_CACHE_PATH",
    "DEFAULT_CONFIG_PATH",
    "LOG_LEVELS",
    "SYSTEM_STATE_DIR",
    "CacheSection",
    "Config",
    "ControlSection",
    "DaneSection",
    "Endpoint",
    "FetchSection",
    "LogSection",
    "MetricsSection",
    "PostfixSection",
    "PublishSection",
    "ReportsSection",
    "ResolverSection",
    "SocketmapSection",
    "load_config",
    "parse_config",
    "read_table",
    "restart_only",
    "user_state_dir",
    "with_values",
]
