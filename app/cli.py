"""Command-line tools: flask --app wsgi <command>."""
import click
from flask import Flask
from sqlalchemy import select

from .crypto import vault
from .extensions import db
from .models import Integration, User
from .services import accounts


def rotate_all_secrets() -> int:
    """Re-encrypt every stored secret with the first key of ENCRYPTION_KEYS."""
    count = 0
    for integration in db.session.scalars(select(Integration).where(Integration.secrets_ciphertext.is_not(None))):
        integration.secrets_ciphertext = vault().rotate(integration.secrets_ciphertext)
        count += 1
    db.session.commit()
    return count


def register_cli(app: Flask) -> None:
    @app.cli.command("rotate-keys")
    def rotate_keys():
        """Re-encrypt every stored secret with the first key of ENCRYPTION_KEYS."""
        count = rotate_all_secrets()
        click.echo(f"Re-encrypted the secrets of {count} integration(s) with the first key.")

    @app.cli.command("create-user")
    @click.option("--email", required=True)
    @click.option("--password", required=True)
    @click.option("--org", "org_name", required=True, help="Organisation name; created if it is new.")
    @click.option("--admin", is_flag=True, help="Make the user an admin of the organisation.")
    def create_user(email, password, org_name, admin):
        """Create a user, creating the organisation if it is new."""
        org = accounts.find_or_create_organization(org_name.strip())
        user, errors = accounts.add_user(org, email, password, "admin" if admin else "staff")
        if errors:
            db.session.rollback()
            for field, messages in errors.items():
                click.echo(f"{field}: {' '.join(messages)}", err=True)
            raise SystemExit(1)
        db.session.commit()
        click.echo(f"Created {user.role} {user.email} in {org.name}.")

    @app.cli.command("create-api-token")
    @click.option("--email", required=True)
    @click.option("--name", default="Made on the command line", help="What the token is for.")
    def create_api_token(email, name):
        """Print a new API token for the user (its last line is the token)."""
        user = db.session.scalar(select(User).where(User.email == email.strip().lower()))
        if user is None:
            click.echo(f"No user with email {email}.", err=True)
            raise SystemExit(1)
        token_name, errors = accounts.clean_token_name(name)
        if errors:
            click.echo(errors["name"][0], err=True)
            raise SystemExit(1)
        token = accounts.create_api_token(user, token_name)
        db.session.commit()
        click.echo(f"API token for {user.email} (shown once, only a hash is kept):")
        click.echo(token)
