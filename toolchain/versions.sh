# Pinned toolchain versions (see README, "Pinned versions").
PULUMI_VER=3.274.1   # CLI; the Python SDK pin (pulumi==3.272.0) lives in requirements.txt
