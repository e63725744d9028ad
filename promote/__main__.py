from promote.cli.main import run

run()
