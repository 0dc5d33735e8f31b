from wamesh.libs.migrations import run_env

run_env(target_metadata=None)
