"""GitHubCredentials: the PAT or GitHub App key as Pulumi secrets, and the manager's credentials file."""

from __future__ import annotations

import json
from typing import Any, NotRequired, TypedDict

import pulumi


class GitHubCredentialsArgs(TypedDict):
    """Either ``token`` (PAT) or ``app_id`` + ``private_key`` (GitHub App). Secrets as Outputs."""

    scope_url: pulumi.Input[str]
    api_url: NotRequired[pulumi.Input[str | None]]
    token: NotRequired[pulumi.Input[str]]
    app_id: NotRequired[pulumi.Input[int | str]]
    private_key: NotRequired[pulumi.Input[str]]
    installation_id: NotRequired[pulumi.Input[int | None]]


class GitHubCredentials(pulumi.ComponentResource):
    """Holds the credentials; ``credentials_file`` is the JSON the pool manager reads (a secret)."""

    scope_url: pulumi.Output[str]
    api_url: pulumi.Output[str | None]
    auth_type: pulumi.Output[str]
    credentials_file: pulumi.Output[str]

    def __init__(self, name: str, args: GitHubCredentialsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ghr:index:GitHubCredentials", name, None, opts)
        has_token = args.get("token") is not None
        has_app = args.get("app_id") is not None or args.get("private_key") is not None
        if has_token == has_app:
            raise ValueError("GitHubCredentials: pass either token (PAT) or app_id + private_key (GitHub App)")
        if has_app and (args.get("app_id") is None or args.get("private_key") is None):
            raise ValueError("GitHubCredentials: a GitHub App needs both app_id and private_key")
        self.scope_url = pulumi.Output.from_input(args["scope_url"])
        self.api_url = pulumi.Output.from_input(args.get("api_url"))
        self.auth_type = pulumi.Output.from_input("pat" if has_token else "app")
        if has_token:
            doc: Any = pulumi.Output.all(token=args["token"]).apply(
                lambda a: json.dumps({"type": "pat", "token": a["token"]}))
        else:
            doc = pulumi.Output.all(app_id=args["app_id"], key=args["private_key"],
                                    inst=args.get("installation_id")).apply(
                lambda a: json.dumps({"type": "app", "app_id": a["app_id"], "private_key": a["key"],
                                      "installation_id": a["inst"]}))
        self.credentials_file = pulumi.Output.secret(doc)
        self.register_outputs({
            "scope_url": self.scope_url, "api_url": self.api_url, "auth_type": self.auth_type,
            "credentials_file": self.credentials_file,
        })
