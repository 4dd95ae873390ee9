from mmtools.cli import main

main()
