from lit_rev.cli import main

main()
