from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, SelectField, StringField
from wtforms.validators import DataRequired, Length

from ..models import ROLES


class SetupForm(FlaskForm):
    organization_name = StringField("Organisation name", validators=[DataRequired(), Length(max=200)])
    email = EmailField("Your email", validators=[DataRequired()])
    password = PasswordField("Password", validators=[DataRequired()], description="At least 10 characters.")


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired()])
    password = PasswordField("Password", validators=[DataRequired()])


class PasswordForm(FlaskForm):
    current_password = PasswordField("Current password", validators=[DataRequired()])
    new_password = PasswordField("New password", validators=[DataRequired()], description="At least 10 characters.")


class AddUserForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired()])
    password = PasswordField("Initial password", validators=[DataRequired()], description="At least 10 characters.")
    role = SelectField("Role", choices=[(r, r.capitalize()) for r in ROLES], default="staff")
