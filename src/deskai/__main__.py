from deskai.cli import main

main()
