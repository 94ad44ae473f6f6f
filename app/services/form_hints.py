"""What an integration's forms offer and warn about: sign-up pages and Lead Ads name a campaign and
a tag of the organisation by name, so their forms suggest the names there are, and the integration's
page says when a named campaign does not exist (its contacts are then enrolled in nothing)."""
from __future__ import annotations

from ..models import Integration
from ..providers import Provider
from . import campaigns, contacts

MAX_SUGGESTIONS = 200  # a list to pick from, not every tag of a large organisation

def suggestions(organization_id: int, provider: type[Provider]) -> dict[str, list[str]]:
    """Names the provider's fields suggest from ("campaigns", "tags"), read only when one asks."""
    wanted = {f.suggest for f in provider.fields if f.suggest}
    readers = {"campaigns": campaigns.names, "tags": contacts.tag_names}
    return {kind: readers[kind](organization_id)[:MAX_SUGGESTIONS] for kind in wanted}


def unknown_campaigns(integration: Integration, provider: type[Provider]) -> set[str]:
    """The fields naming a campaign the organisation does not have."""
    config = integration.config or {}
    return {f.name for f in provider.fields
            if f.suggest == "campaigns" and (config.get(f.name) or "").strip()
            and campaigns.find_by_name(integration.organization_id, config[f.name]) is None}
