import re

from ..base import Field, GiveUp, Provider

FORM_FIELD_TYPES = ("text", "email", "phone", "textarea", "select", "checkbox", "number", "date")


class HostedSignupPage(Provider):
    integration_type = "signup_page"
    name = "hosted"
    label = "Switchboard sign-up form"
    fields = (
        Field("page_url", "Page URL", "url", help="Where the form lives on your site."),
        Field("form_fields", "Form fields (JSON)", "json", required=True,
              default=[{"name": "email", "type": "email", "label": "Email", "required": True}],
              help='A list of fields: [{"name": "email", "type": "email", "label": "Email", "required": true}]. '
                   f"Types: {', '.join(FORM_FIELD_TYPES)}; select fields take \"options\"."),
        Field("redirect_url", "Redirect after sign-up", "url", help="Leave empty to show a thank-you message."),
        Field("auto_create_contact", "Create a contact from each sign-up", "bool", default=True),
        Field("apply_tag", "Tag to apply", suggest="tags"),
        Field("trigger_campaign", "Campaign to start", suggest="campaigns",
              help="The name of a campaign on the Campaigns page; each new contact is enrolled once."),
        Field("allowed_origins", "Allowed origins for the embedded form", "lines",
              help="One per line, e.g. https://www.example.com"),
    )

    def validate(self, config, secrets):
        errors: dict[str, list[str]] = {}
        problems = form_field_problems(config.get("form_fields"))
        if problems:
            errors["form_fields"] = problems
        bad_origins = [o for o in parse_origins(config.get("allowed_origins")) if not ORIGIN.match(o)]
        if bad_origins:
            errors["allowed_origins"] = [f"Not an origin (scheme://host[:port]): {', '.join(bad_origins)}"]
        return errors

    def check(self, config, secrets):
        # A hosted form has no provider account to prove; the check proves the form can be served.
        problems = form_field_problems(config.get("form_fields"))
        if problems:
            raise GiveUp("The form fields are invalid: " + " ".join(problems))
        count = len(config["form_fields"])
        return f"The form is ready with {count} field{'s' if count != 1 else ''}."


ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?$")
FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def parse_origins(value: str | None) -> list[str]:
    return [o.strip().rstrip("/") for o in re.split(r"[\s,]+", value or "") if o.strip()]


def form_field_problems(form_fields) -> list[str]:
    """What is wrong with a form-fields list, in plain words (empty when it is fine)."""
    if not isinstance(form_fields, list) or not form_fields:
        return ["Give a list with at least one field."]
    problems, seen = [], set()
    for position, item in enumerate(form_fields, start=1):
        if not isinstance(item, dict):
            problems.append(f"Field {position} is not an object.")
            continue
        name, kind = item.get("name"), item.get("type", "text")
        if not isinstance(name, str) or not FIELD_NAME.match(name):
            problems.append(f"Field {position} needs a name of lowercase letters, digits and underscores.")
        elif name in seen:
            problems.append(f"Field name {name!r} is used twice.")
        seen.add(name)
        if kind not in FORM_FIELD_TYPES:
            problems.append(f"Field {position} has an unknown type {kind!r}.")
        if not isinstance(item.get("label", ""), str) or not item.get("label"):
            problems.append(f"Field {position} needs a label.")
        if not isinstance(item.get("required", False), bool):
            problems.append(f"Field {position}: required must be true or false.")
        options = item.get("options")
        if kind == "select" and (not isinstance(options, list) or not options or not all(isinstance(o, str) for o in options)):
            problems.append(f"Field {position} is a select and needs a list of options.")
    if not ({"email", "phone"} & seen):
        problems.append("The form needs an email or a phone field to create a contact.")
    return problems
