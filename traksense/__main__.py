from traksense.cli import main

main()
