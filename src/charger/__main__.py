from charger.cli import main

main()
