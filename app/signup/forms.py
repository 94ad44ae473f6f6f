from flask_wtf import FlaskForm


class ApiKeyForm(FlaskForm):
    """The "Create API key" / "Replace API key" button: CSRF token only."""
