from ..base import Field, GiveUp, Provider
from ..meta import graph_get

DIGITS = r"^\d{1,25}$"


class InstagramMessaging(Provider):
    """An Instagram professional account linked to a Facebook Page, messaged through the Page's token
    (Instagram messaging via the Messenger Platform). Connected with "Connect with Meta"."""

    integration_type = "instagram"
    name = "graph_api"
    label = "Instagram (Meta Graph API)"
    fields = (
        Field("instagram_account_id", "Instagram account ID", required=True, pattern=DIGITS,
              pattern_message="The Instagram account ID is a number."),
        Field("username", "Instagram username"),
        Field("page_id", "Linked Facebook Page ID", required=True, pattern=DIGITS,
              pattern_message="The Page ID is a number."),
        Field("page_access_token", "Page access token", "secret", required=True,
              help="The token of the Page the Instagram account is linked to, with instagram_manage_messages."),
    )

    def check(self, config, secrets):
        # Reading the account through the Page's token proves both the link and the token; nothing is sent.
        account = graph_get(self.settings, config["instagram_account_id"], provider_label=self.label,
                            headers={"Authorization": f"Bearer {secrets['page_access_token']}"},
                            params={"fields": "id,username"})
        if str(account.get("id") or "") != config["instagram_account_id"]:
            raise GiveUp("Meta answered for another Instagram account: reconnect with Meta.")
        username = account.get("username")
        return f"The Page's token reaches Instagram account {config['instagram_account_id']}" + \
            (f" (@{username})." if username else ".")
