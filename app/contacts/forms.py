"""Forms for contacts and tags. Names are checked by the service (contacts.normalise_tag),
the same for these forms and the JSON API."""
from flask_wtf import FlaskForm
from wtforms import StringField


class TagForm(FlaskForm):
    name = StringField("Tag", description="A new or existing tag, e.g. “newsletter”.")


class ActionForm(FlaskForm):
    """A button that posts: CSRF token only."""
