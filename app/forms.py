"""Forms every part of the app uses."""
from flask_wtf import FlaskForm


class ActionForm(FlaskForm):
    """A button that posts: CSRF token only."""
