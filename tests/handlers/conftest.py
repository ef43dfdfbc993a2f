"""Handler tests reuse the end-to-end bot: a real HTTP endpoint, real Redis, the fake Slack."""

from tests.e2e_slack.conftest import (  # noqa: F401 - fixtures are imported to be used
    _no_proxies,
    backend,
    bot,
    catalog,
    catalog_path,
    fake_slack,
    make_bot,
    slack,
)
