"""Forms of the Meta pages. Values are checked by the services (meta_app, meta_connect), the same
for these forms and the JSON API; the forms bring CSRF and the fields' labels."""
from flask_wtf import FlaskForm
from wtforms import PasswordField, RadioField, StringField


class MetaAppForm(FlaskForm):
    app_id = StringField("App ID", description="A number: App Dashboard → App settings → Basic.")
    app_secret = PasswordField("App Secret", description="Shown under the App ID. Leave empty to keep the saved one.")


class PickPageForm(FlaskForm):
    page_id = RadioField("Page", validate_choice=False)


class WhatsAppForm(FlaskForm):
    phone_number_id = StringField("Phone number ID", description="WhatsApp → API Setup in the Meta App Dashboard.")
    business_account_id = StringField("WhatsApp Business Account ID", description="Shown beside the phone number ID.")
    access_token = PasswordField("Access token",
                                 description="A system user token of your Meta app with whatsapp_business_messaging "
                                             "and whatsapp_business_management.")


def attach_errors(form: FlaskForm, errors: dict[str, list[str]]) -> list[str]:
    """Put a service's errors on the form's fields; return those of no field, to show above the form."""
    rest = []
    for name, messages in errors.items():
        if name in form:
            form[name].errors = list(form[name].errors) + messages
        else:
            rest.extend(messages)
    return rest
