from alerts.cli import run

run()
