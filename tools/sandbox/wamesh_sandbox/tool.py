"""How the kit's ``wamesh dev`` finds the sandbox."""

from wamesh_kit.registry import DevTool

TOOL = DevTool(
    name="sandbox", main="wamesh_sandbox.__main__:main", cli="wamesh_sandbox.cli:sandbox_app"
)
