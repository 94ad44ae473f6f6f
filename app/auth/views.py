from flask import abort, current_app, flash, make_response, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user
from wtforms.fields.choices import SelectChoice
from sqlalchemy import select

from ..extensions import db, limiter
from ..models import User
from ..services import accounts
from ..forms import ActionForm
from . import bp
from .forms import AddUserForm, LoginForm, OrganizationForm, PasswordForm, ResetPasswordForm, RoleForm, SetupForm, TokenForm


def _attach_errors(form, errors: dict[str, list[str]]) -> None:
    for name, messages in errors.items():
        field = getattr(form, name, None)
        if field is not None:
            field.errors = list(field.errors) + messages


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("integrations.hub")


@bp.route("/setup", methods=["GET", "POST"])
def setup():
    if not accounts.first_run_needed():
        return redirect(url_for("auth.login"))
    form = SetupForm()
    if form.validate_on_submit():
        user, errors = accounts.set_up_first_run(form.organization_name.data, form.email.data, form.password.data)
        if not errors:
            db.session.commit()
            login_user(user)
            flash("Welcome to Switchboard. Add your first integration below.", "success")
            return redirect(url_for("integrations.hub"))
        db.session.rollback()
        _attach_errors(form, errors)
    return render_template("auth/setup.html", form=form), 400 if form.errors else 200


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["LOGIN_RATE_LIMIT"], methods=["POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("integrations.hub"))
    form = LoginForm()
    if form.validate_on_submit():
        user = accounts.authenticate(form.email.data, form.password.data)
        if user:
            login_user(user)
            return redirect(_safe_next(request.args.get("next")))
        form.password.errors = ["Wrong email or password."]
    return render_template("auth/login.html", form=form), 400 if form.errors else 200


@bp.post("/logout")
@login_required
def logout():
    logout_user()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password():
    form = PasswordForm()
    if form.validate_on_submit():
        errors = accounts.change_password(current_user, form.current_password.data, form.new_password.data)
        if not errors:
            db.session.commit()
            login_user(current_user._get_current_object())  # this session carries the new version; others end
            flash("Your password was changed. Your other sessions are signed out.", "success")
            return redirect(url_for("integrations.hub"))
        _attach_errors(form, errors)
    return render_template("auth/password.html", form=form), 400 if form.errors else 200


@bp.route("/account/tokens", methods=["GET", "POST"])
@login_required
def api_tokens():
    """The signed-in user's API tokens: make one (shown once), see when each was last used, revoke one."""
    form = TokenForm()
    new_token, status = None, 200
    if form.validate_on_submit():
        name, errors = accounts.clean_token_name(form.name.data)
        if errors:
            _attach_errors(form, errors)
        else:
            new_token = accounts.create_api_token(current_user, name)
            db.session.commit()
            form, status = TokenForm(formdata=None), 201
    if form.errors:
        status = 400
    response = make_response(render_template("auth/tokens.html", form=form, tokens=accounts.tokens_of(current_user),
                                             new_token=new_token, action_form=ActionForm()), status)
    if new_token:
        response.headers["Cache-Control"] = "no-store"  # the token is on this page, once
    return response


@bp.route("/account/tokens/<int:token_id>/revoke", methods=["GET", "POST"])
@login_required
def revoke_token(token_id):
    token = accounts.token_of(current_user, token_id) or abort(404)
    form = ActionForm()
    if form.validate_on_submit():
        name = token.name or "The token"
        accounts.revoke_token(token)
        db.session.commit()
        flash(f"{name} was revoked: it no longer works.", "success")
        return redirect(url_for("auth.api_tokens"))
    return render_template("auth/revoke_token.html", token=token, form=form)


@bp.route("/users", methods=["GET", "POST"])
@login_required
def users():
    form = AddUserForm()
    if request.method == "POST":
        if not current_user.is_admin:
            abort(403)
        if form.validate_on_submit():
            user, errors = accounts.add_user(current_user.organization, form.email.data, form.password.data, form.role.data)
            if not errors:
                db.session.commit()
                flash(f"{user.email} can now sign in as {user.role}.", "success")
                return redirect(url_for("auth.users"))
            db.session.rollback()
            _attach_errors(form, errors)
    return _team_page(form, status=400 if form.errors else 200)


def _team_page(form: AddUserForm | None = None, role_errors: dict[int, list[str]] | None = None, status: int = 200):
    people = db.session.scalars(select(User).where(User.organization_id == current_user.organization_id)
                                .order_by(User.email)).all()
    return render_template("auth/users.html", form=form or AddUserForm(formdata=None), users=people,
                           role_form=RoleForm(formdata=None), role_errors=role_errors or {}), status


def _team_member(user_id: int) -> User:
    """A user of the signed-in admin's organisation (404 for anyone else's, 403 for staff)."""
    if not current_user.is_admin:
        abort(403)
    user = db.session.get(User, user_id)
    if user is None or user.organization_id != current_user.organization_id:
        abort(404)
    return user


@bp.post("/users/<int:user_id>/role")
@login_required
def change_role(user_id):
    user = _team_member(user_id)
    form = RoleForm()
    errors = accounts.change_role(user, form.role.data) if form.validate_on_submit() else {
        "role": ["The form expired. Try again."]}
    if errors:
        db.session.rollback()
        return _team_page(role_errors={user_id: errors["role"]}, status=400)
    db.session.commit()
    flash(f"{user.email} is now {user.role}.", "success")
    return redirect(url_for("auth.users"))


@bp.route("/users/<int:user_id>/password", methods=["GET", "POST"])
@login_required
def reset_password(user_id):
    user = _team_member(user_id)
    if user.id == current_user.id:
        return redirect(url_for("auth.change_password"))
    form = ResetPasswordForm()
    if form.validate_on_submit():
        errors = accounts.reset_password(user, form.password.data)
        if not errors:
            db.session.commit()
            flash(f"{user.email} has a new password and was signed out everywhere. Tell them the new password.",
                  "success")
            return redirect(url_for("auth.users"))
        _attach_errors(form, errors)
    return render_template("auth/reset_password.html", user=user, form=form), 400 if form.errors else 200


@bp.route("/users/<int:user_id>/remove", methods=["GET", "POST"])
@login_required
def remove_user(user_id):
    user = _team_member(user_id)
    form = ActionForm()
    errors = {}
    if form.validate_on_submit():
        email = user.email
        errors = accounts.remove_user(current_user, user)
        if not errors:
            db.session.commit()
            flash(f"{email} was removed from the team and can no longer sign in.", "success")
            return redirect(url_for("auth.users"))
        db.session.rollback()
    return render_template("auth/remove_user.html", user=user, form=form, errors=errors.get("user", []),
                           tokens=accounts.token_count(user)), 400 if errors else 200


@bp.route("/settings", methods=["GET", "POST"])
@login_required
def settings():
    organization = current_user.organization
    form = OrganizationForm(data={"name": organization.name, "default_country": organization.default_country})
    form.default_country.choices = [SelectChoice(code, label) for code, label in accounts.country_choices()]
    if request.method == "POST":
        if not current_user.is_admin:
            abort(403)
        if form.validate_on_submit():
            errors = accounts.update_organization(organization, form.name.data, form.default_country.data)
            if not errors:
                db.session.commit()
                flash("Organisation settings saved.", "success")
                return redirect(url_for("auth.settings"))
            db.session.rollback()
            _attach_errors(form, errors)
    return render_template("auth/settings.html", form=form), 400 if form.errors else 200
