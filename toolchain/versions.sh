# Pinned versions of the toolchain; change them together (see README "Pinned versions").
PULUMI_VER=3.274.1
DOCKER_PROVIDER_VER=5.1.0
DOCKER_PROVIDER_REV=e944612c4c970123d9a16a48c40d37dc84c89a70   # pulumi-docker tag v5.1.0
DOCKER_UPSTREAM_REV=5074970c71ce6cc393c74942d5d628943834beb9   # kreuzwerker/terraform-provider-docker submodule at v5.1.0
COMMAND_PROVIDER_VER=1.2.1
COMMAND_PROVIDER_REV=7f3eb6f3b77cd0fa3895ba437a695dd393f7dd25  # pulumi-command tag v1.2.1
