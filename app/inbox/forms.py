"""Forms of the inbox. The reply's content is checked by services/inbox.send_reply, the same as for
the JSON API; the form brings CSRF, the fields' names and the translation to that API's shape."""
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import StringField, TextAreaField

from ..services import inbox, inbox_pages


class ReplyForm(FlaskForm):
    text = TextAreaField("Reply")
    upload = FileField("File")
    media_url = StringField("Or a link to the file")
    template = StringField("Template")  # an approved template's id, from the picker

    def reply(self, conversation, parameters: list[str]) -> tuple[dict, inbox.Upload | None, dict[str, list[str]]]:
        """(data for send_reply, the uploaded file, errors found before it): a chosen template wins;
        otherwise text, a link and a file, each only when given."""
        if self.template.data:
            template = inbox_pages.template_for(conversation.integration, self.template.data)
            if template is None:
                return {}, None, {"template": ["Choose one of the approved templates."]}
            return {"template": {"name": template.name, "language": template.language,
                                 "parameters": parameters}}, None, {}
        data = {}
        if (self.text.data or "").strip():
            data["text"] = self.text.data
        if (self.media_url.data or "").strip():
            data["media_url"] = self.media_url.data.strip()
        upload = None
        if self.upload.data and self.upload.data.filename:
            upload = inbox.Upload(self.upload.data.read(), self.upload.data.filename, self.upload.data.mimetype)
        return data, upload, {}

