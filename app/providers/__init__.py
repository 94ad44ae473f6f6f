"""The registry of integration types and their provider adapters."""
from __future__ import annotations

from dataclasses import dataclass

from .base import Provider, ProviderSettings
from .email.mailchimp import MailchimpTransactional
from .email.mailgun import Mailgun
from .email.sendgrid import SendGrid
from .email.ses import AmazonSES
from .email.smtp import SMTP
from .facebook.graph_api import FacebookGraphAPI
from .instagram.graph_api import InstagramMessaging
from .signup_page.hosted import HostedSignupPage
from .sms.plivo import Plivo
from .sms.sns import AmazonSNS
from .sms.twilio import Twilio
from .sms.vonage import Vonage
from .whatsapp.cloud_api import WhatsAppCloudAPI


@dataclass(frozen=True)
class IntegrationType:
    key: str
    label: str
    configure_slug: str  # the last part of /api/integrations/<id>/configure/<slug>/
    description: str
    providers: tuple[type[Provider], ...]
    first_step: str  # what the empty state tells people to do

    def provider(self, name: str) -> type[Provider] | None:
        return next((p for p in self.providers if p.name == name), None)


INTEGRATION_TYPES: dict[str, IntegrationType] = {
    t.key: t
    for t in (
        IntegrationType("email", "Email", "email", "Send email through your provider and track delivery.",
                        (SendGrid, Mailgun, AmazonSES, SMTP, MailchimpTransactional),
                        "pick your email provider or SMTP server, enter its credentials, then run a connection test."),
        IntegrationType("sms", "SMS", "sms", "Send text messages and receive delivery receipts.",
                        (Twilio, Vonage, AmazonSNS, Plivo),
                        "pick your SMS provider, enter your sending number and credentials, then run a connection test."),
        IntegrationType("whatsapp", "WhatsApp", "whatsapp", "Message customers on WhatsApp through the Cloud API.",
                        (WhatsAppCloudAPI,),
                        "enter the phone number ID, business account ID and access token from Meta's API Setup page."),
        IntegrationType("signup_page", "Sign-up page", "signup", "Turn sign-ups on your website into contacts.",
                        (HostedSignupPage,),
                        "describe the form's fields; each sign-up then becomes a contact."),
        IntegrationType("facebook", "Facebook", "facebook", "Receive Lead Ads leads and Messenger conversations.",
                        (FacebookGraphAPI,),
                        "enter your Meta app's ID and secret and your page's access token, then run a connection test."),
        IntegrationType("instagram", "Instagram", "instagram", "Answer Instagram direct messages from the inbox.",
                        (InstagramMessaging,),
                        "use Connect with Meta on the settings page: it finds the Instagram account linked to your Page."),
    )
}


def provider_class(integration_type: str, provider: str) -> type[Provider] | None:
    kind = INTEGRATION_TYPES.get(integration_type)
    return kind.provider(provider) if kind else None


__all__ = ["INTEGRATION_TYPES", "IntegrationType", "Provider", "ProviderSettings", "provider_class"]
