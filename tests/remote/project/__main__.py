"""An image built on a remote engine and a container started from it there."""
import pulumi

from components.docker import DockerContainer, DockerImage

cfg = pulumi.Config()
host = {"url": cfg.require("hostUrl")}
if cfg.get_object("sshOptions"):
    host["ssh_options"] = cfg.get_object("sshOptions")
tls = cfg.get_secret_object("tls")
if cfg.get_bool("useTls"):
    host["tls"] = tls

image = DockerImage(
    "image", tag=cfg.require("tag"), context="image", dockerfile="Dockerfile",
    build_args={"MARK": cfg.require("mark")}, host=host,
)
box = DockerContainer(
    "box", name=cfg.require("containerName"), image=image.image_id,
    command=["sleep", "infinity"], network_mode="host", host=host,
)
pulumi.export("image_id", image.image_id)
pulumi.export("container_id", box.container_id)
