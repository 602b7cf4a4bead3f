from djctl.cli.main import main

main(prog_name="djctl")
