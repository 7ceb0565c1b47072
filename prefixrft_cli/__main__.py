from prefixrft_cli.cli.app import main

main()
