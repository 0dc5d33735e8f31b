from wamesh.cli import main

main()
