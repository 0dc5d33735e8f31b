"""How the kit's ``wamesh dev`` finds the sandbox."""

from wamesh_kit.registry import DevTool

TOOL = DevTool(
    name="sandbox",
    main="wamesh_sandbox.__main__:main",
    cli="wamesh_sandbox.cli:sandbox_app",
    # Under `wamesh dev up` the dispatcher sends here: a laptop never reaches real Twilio.
    service_env=(("WAMESH_TWILIO_BASE_URL", "http://127.0.0.1:8090"),),
)
