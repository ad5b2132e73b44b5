"""``alerts users``: accounts for the console and tokens for the API.

The first admin can only come from here: the console has no sign-up.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys

from alerts import two_factor
from alerts.cli import CLI_ACTOR, EXIT_DECLINED, confirmed
from alerts.db import get_database, utcnow
from alerts.models import Role
from alerts.users import (
    UserError,
    check_password_rules,
    create_api_token,
    create_user,
    find_user,
    generate_password,
    list_users,
    normalise_email,
    parse_role,
    remove_user,
)

EXIT_REFUSED = 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    users = subparsers.add_parser("users", help="console users and API tokens")
    actions = users.add_subparsers(dest="action", required=True, metavar="ACTION")

    add = actions.add_parser("add", help="add an admin or editor")
    add.add_argument("email", help="the staff member's address, also their sign-in name")
    add.add_argument(
        "--role",
        default=Role.EDITOR.value,
        help=f"what they may do: {' | '.join(r.value for r in Role)} (default: editor)",
    )
    source = add.add_mutually_exclusive_group()
    source.add_argument(
        "--password-stdin", action="store_true", help="read the password from the first stdin line"
    )
    source.add_argument(
        "--generate-password", action="store_true", help="make one up and print it once"
    )
    add.set_defaults(handler=run_add)

    listing = actions.add_parser("list", help="every user with role and state")
    listing.add_argument("--json", action="store_true", help="print them as one JSON array")
    listing.set_defaults(handler=run_list)

    token = actions.add_parser("token", help="make an API token for a user (printed once)")
    token.add_argument("email", help="whose API token to make")
    token.add_argument("--name", required=True, help="what the token is for, e.g. 'cms sync'")
    token.set_defaults(handler=run_token)

    remove = actions.add_parser(
        "remove", help="delete a console user with their sessions and API tokens"
    )
    remove.add_argument("email", help="the user's address (see `users list`)")
    remove.add_argument("--yes", action="store_true", help="do not ask; remove at once")
    remove.set_defaults(handler=run_remove)

    reset = actions.add_parser(
        "reset-2fa",
        help="remove a user's two-factor sign-in (lost phone and recovery codes)",
        description="Removes the TOTP secret and the recovery codes and ends the user's "
        "sessions; they sign in with the password alone, or enrol again at once if "
        "ALERTS_REQUIRE_2FA covers them. Audited as user.2fa_reset.",
    )
    reset.add_argument("email", help="whose two-factor sign-in to remove")
    reset.set_defaults(handler=run_reset_2fa)


def _password(args: argparse.Namespace) -> tuple[str, bool]:
    """The password and whether it was generated (and so must be shown)."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n"), False
    if args.generate_password or not sys.stdin.isatty():
        return generate_password(), True
    first = getpass.getpass("Password: ")
    check_password_rules(first)
    if getpass.getpass("Repeat it: ") != first:
        raise UserError("the passwords differ")
    return first, False


def run_add(args: argparse.Namespace) -> int:
    try:
        role = parse_role(args.role)
        password, generated = _password(args)
        with get_database().session_scope() as session:
            user = create_user(session, CLI_ACTOR, args.email, password, role, utcnow())
            print(f"user {user.id}: {user.email} ({user.role.value})")
    except UserError as error:
        print(f"alerts users add: {error}", file=sys.stderr)
        return EXIT_REFUSED
    if generated:
        print(f"password: {password}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    with get_database().session_scope() as session:
        rows = [
            {
                "id": user.id,
                "email": user.email,
                "role": user.role.value,
                "active": user.active,
                "two_factor": two_factor.enrolled(user),
                "created_at": user.created_at.isoformat(),
            }
            for user in list_users(session)
        ]
    if args.json:
        print(json.dumps(rows))
        return 0
    for row in rows:
        state = "" if row["active"] else "  (deactivated)"
        print(f"{row['id']:>4}  {row['email']}  {row['role']}{state}")
    return 0


def run_token(args: argparse.Namespace) -> int:
    try:
        with get_database().session_scope() as session:
            user = find_user(session, args.email)
            if user is None or not user.active:
                raise UserError(f"no active user {args.email}")
            new = create_api_token(session, CLI_ACTOR, user, args.name, utcnow())
    except UserError as error:
        print(f"alerts users token: {error}", file=sys.stderr)
        return EXIT_REFUSED
    print(new.secret)
    return 0


def run_remove(args: argparse.Namespace) -> int:
    database = get_database()
    try:
        address = normalise_email(args.email)
        with database.session_scope() as session:
            user = find_user(session, address)
            if user is None:
                raise UserError(f"no user {address}")
            question = f"Remove {user.role.value} {user.email} (user {user.id})?"
        if not confirmed(question, args.yes):
            return EXIT_DECLINED
        with database.session_scope() as session:
            user = find_user(session, address)
            if user is None:
                raise UserError(f"no user {address}")
            user_id = user.id
            remove_user(session, CLI_ACTOR, user, utcnow())
    except UserError as error:
        print(f"alerts users remove: {error}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"user {user_id}: removed")
    return 0


def run_reset_2fa(args: argparse.Namespace) -> int:
    try:
        with get_database().session_scope() as session:
            user = find_user(session, args.email)
            if user is None:
                raise UserError(f"no user {args.email}")
            done = two_factor.reset(session, CLI_ACTOR, user, utcnow())
            address = user.email
    except UserError as error:
        print(f"alerts users reset-2fa: {error}", file=sys.stderr)
        return EXIT_REFUSED
    if done:
        print(f"{address}: two-factor sign-in removed and every session ended")
    else:
        print(f"{address}: had no two-factor sign-in; nothing changed")
    return 0
