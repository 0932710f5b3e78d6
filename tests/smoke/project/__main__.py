"""One container on the local engine and one plain dynamic resource, under the real engine."""
import uuid

import pulumi
from pulumi.dynamic import CreateResult, Resource, ResourceProvider

from components.docker import DockerContainer


class _TokenProvider(ResourceProvider):
    def create(self, props):
        return CreateResult(id_=uuid.uuid4().hex, outs={"value": props["value"]})


class Token(Resource, module="smoke", name="Token"):
    value: pulumi.Output[str]

    def __init__(self, name: str, value: str, opts=None):
        super().__init__(_TokenProvider(), name, {"value": value}, opts)


cfg = pulumi.Config()
token = Token("token", cfg.require("marker"))
box = DockerContainer(
    "box",
    name=cfg.require("containerName"),
    image=cfg.require("image"),
    command=["sleep", "infinity"],
    labels={"ghr.smoke": token.value},
)
pulumi.export("container_id", box.container_id)
pulumi.export("marker", token.value)
