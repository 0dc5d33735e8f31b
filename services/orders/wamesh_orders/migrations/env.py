from wamesh_kit.migrations import run_env

run_env(target_metadata=None)
