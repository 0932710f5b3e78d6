"""Runs the repository's own program: the e2e tests copy this folder to a temporary place
(with its own backend and stack file) so nothing is written into the checkout."""
import os
import runpy

runpy.run_path(os.path.join(os.environ["GHR_REPO_ROOT"], "__main__.py"), run_name="__main__")
