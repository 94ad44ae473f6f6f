from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length

from ..models import ROLES


# Fields that the services validate carry no WTForms validators, so every error shows at once.
class SetupForm(FlaskForm):
    organization_name = StringField("Organisation name", validators=[Length(max=200)])
    email = EmailField("Your email")
    password = PasswordField("Password", description="At least 10 characters.")


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired()])
    password = PasswordField("Password", validators=[DataRequired()])


class PasswordForm(FlaskForm):
    current_password = PasswordField("Current password", validators=[DataRequired()])
    new_password = PasswordField("New password", description="At least 10 characters.")


class AddUserForm(FlaskForm):
    email = EmailField("Email")
    password = PasswordField("Initial password", description="At least 10 characters.")
    role = SelectField("Role", choices=[SelectChoice(r, r.capitalize()) for r in ROLES], default="staff")


class ResetPasswordForm(FlaskForm):
    password = PasswordField("New password", description="At least 10 characters. They can change it on their account page.")


class TokenForm(FlaskForm):
    name = StringField("Name", description="What the token is for, e.g. “Website backend” or “Zapier”.")


class RoleForm(FlaskForm):
    role = SelectField("Role", choices=[SelectChoice(r, r.capitalize()) for r in ROLES], validate_choice=False)


class OrganizationForm(FlaskForm):
    name = StringField("Organisation name")
    default_country = SelectField("Default country for phone numbers", validate_choice=False,
                                  description="Local numbers from sign-ups, leads and the API, such as 4155552671, "
                                              "are read as numbers of this country. Numbers given with + and a "
                                              "country code are never changed.")
