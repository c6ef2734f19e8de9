from searcher._cli import main

main()
