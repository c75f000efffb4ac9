"""tempo-lite: a Grafana Tempo compatible trace store in one Python process."""

__version__ = "0.1.0"
# The Tempo release whose HTTP API tempo-lite follows; Grafana feature-gates on this semver
# (streaming search needs >= 2.2.0, streaming metrics >= 2.7.0).
TEMPO_COMPAT_VERSION = "2.9.0"
