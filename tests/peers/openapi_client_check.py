"""Drive Glia's API through a client GENERATED from /api/openapi.json by
openapi-python-client (tests/openapi_client.rs generates it and runs this script).

Usage: openapi_client_check.py PACKAGE_PARENT_DIR PACKAGE BASE_URL ADMIN PASSWORD TECH PASSWORD

Prints one line per check ("NAME STATUS [extra]"); the Rust test asserts on them.
"""

import importlib
import sys


def main() -> None:
    parent, package, base_url, admin, admin_pw, tech, tech_pw = sys.argv[1:8]
    sys.path.insert(0, parent)
    pkg = importlib.import_module(package)
    token_op = importlib.import_module(f"{package}.api.auth.auth_token")
    refresh_op = importlib.import_module(f"{package}.api.auth.auth_refresh")
    me_op = importlib.import_module(f"{package}.api.auth.auth_me")
    list_users = importlib.import_module(f"{package}.api.users.list_users")
    get_user = importlib.import_module(f"{package}.api.users.get_user")
    list_centres = importlib.import_module(f"{package}.api.centres.list_centres")
    create_centre = importlib.import_module(f"{package}.api.centres.create_centre")
    models = importlib.import_module(f"{package}.models")

    anon = pkg.Client(base_url=base_url, raise_on_unexpected_status=False)

    def login(user: str, password: str):
        body = models.TokenRequest(grant_type="password", username=user, password=password)
        return token_op.sync_detailed(client=anon, body=body)

    r = login(admin, admin_pw)
    print("login", int(r.status_code), r.parsed.token_type)
    tokens = r.parsed

    r = refresh_op.sync_detailed(
        client=anon, body=models.RefreshRequest(refresh_token=tokens.refresh_token)
    )
    print("refresh", int(r.status_code), r.parsed.refresh_token != tokens.refresh_token)
    r2 = refresh_op.sync_detailed(
        client=anon, body=models.RefreshRequest(refresh_token=tokens.refresh_token)
    )
    print("refresh_reused", int(r2.status_code), r2.parsed.code)
    admin_client = pkg.AuthenticatedClient(
        base_url=base_url, token=r.parsed.access_token, raise_on_unexpected_status=False
    )

    r = me_op.sync_detailed(client=admin_client)
    print("me", int(r.status_code), r.parsed.username, r.parsed.role.value)

    r = create_centre.sync_detailed(
        client=admin_client, body=models.CentreCreate(name="Generated Client Centre")
    )
    print("create_centre", int(r.status_code), r.parsed.name)

    r = list_users.sync_detailed(client=admin_client)
    print("users", int(r.status_code), len(r.parsed))
    r = list_centres.sync_detailed(client=admin_client)
    print("centres", int(r.status_code), len(r.parsed))

    r = list_users.sync_detailed(client=anon)
    print("anonymous_users", int(r.status_code), r.headers.get("www-authenticate", ""))

    tech_tokens = login(tech, tech_pw).parsed
    tech_client = pkg.AuthenticatedClient(
        base_url=base_url, token=tech_tokens.access_token, raise_on_unexpected_status=False
    )
    r = list_users.sync_detailed(client=tech_client)
    print("technician_users", int(r.status_code), r.parsed.code)

    r = get_user.sync_detailed(id=987654, client=admin_client)
    print("unknown_user", int(r.status_code), r.parsed.code)


if __name__ == "__main__":
    main()
